"""What import produces, shared by the stages."""

from dataclasses import dataclass, field

from scenarios.model import (
    Scenario,
)


@dataclass(slots=True)
class Imported:
    scenario: Scenario
    skew_ms: int
    latency_ms: int
    pairs: int
    problems: list[str]  # malformed lines
    unexplained: list[str]  # things the logs show that no inferred fault explains
    notes: list[str]  # how things were explained (one line per inferred fault)
    mismatches: list[str] = field(default_factory=list)  # replay vs logs
    violated: list[str] = field(default_factory=list)  # by the replay
    jitter_ms: int = 0  # one-way delay above the latency still counted as normal
    spread_ms: int = 0  # how much the per-exchange clock offsets disagree (MAD)
    clock_steps: list[str] = field(default_factory=list)  # detected terminal clock steps
    # Invariants judged on the logs themselves (judge.py): name -> one finding each.
    logged_violations: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class _Purchase:
    at_ms: int
    amount: int
    card: str
    line: int
    displays: list[str] = field(default_factory=list)
    retry_gaps: list[int] = field(default_factory=list)  # FAILED -> keyed again, per retry
    preauth: bool = False  # keyed as a pre-authorisation (a hold, completed later)
