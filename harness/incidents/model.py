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
    violated: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Purchase:
    at_ms: int
    amount: int
    card: str
    line: int
    displays: list[str] = field(default_factory=list)
