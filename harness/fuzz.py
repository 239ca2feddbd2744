"""Fuzz a firmware: throw swarm-drawn scenarios at it, shrink any violation to the
smallest scenario that shows it, and write that scenario as a file.

Hypothesis draws the scenarios (so they shrink; a bare seed would not). The engine
runs each one synchronously in virtual time. A campaign is split into chunks of
examples, each chunk seeded from (campaign seed, shard, chunk number), so that a
fixed seed reproduces the whole campaign, shards never share a seed stream, and a
wall-clock budget only decides how many chunks run, never what they contain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings, target
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from scenarios.model import Scenario
from scenarios.writer import scenario_to_toml
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_OFFLINE,
    FEATURE_PARTIAL,
    FEATURE_PREAUTH,
    FEATURE_REFUND,
    FEATURE_WALLET,
)

from .check import InvariantViolated, assert_invariants
from .runner import RunResult, UsageError, declared_features, load_firmware, run_scenario
from .shrink import tidy
from .strategies import scenarios

# Examples per chunk: small enough that a budget is honoured within a second or
# two, large enough that Hypothesis's generation phases have room to work.
CHUNK_EXAMPLES = 50

# `posharness fuzz` with neither --budget nor --examples runs this long (wall
# seconds), stopping at the first failure.
DEFAULT_BUDGET_S = 30.0


@dataclass(frozen=True, slots=True)
class Profile:
    budget_s: float  # wall seconds when no --examples / --budget is given
    derandomize: bool  # True: no example database unless one is named (--db)
    shrink_rounds: int  # extra rounding passes after Hypothesis's shrink


PROFILES: dict[str, Profile] = {
    # CI: the same examples on every machine; a database only when named (--db).
    "ci": Profile(budget_s=DEFAULT_BUDGET_S, derandomize=True, shrink_rounds=1),
    # A developer's machine: the local example database replays past failures.
    "dev": Profile(budget_s=120.0, derandomize=False, shrink_rounds=1),
    "deep": Profile(budget_s=3_600.0, derandomize=False, shrink_rounds=2),
}


# The field that tells records of one kind apart, for coverage.
_SIGNATURE_FIELD = {
    "input": "event",
    "display": "outcome",
    "host": "action",
    "cashier": "action",
    "power": "state",
    "print": "status",
    "fault": "fault",
    "ignored": "input",
}
# Behaviours a campaign remembers (a bound: the vocabulary is far smaller).
BEHAVIOURS_MAX = 100_000


def signature(rec: dict[str, Any]) -> str:
    """What kind of thing a trace record shows: `send:0210:91`, `display:declined`,
    `journal:reversal_pending`, `fault:drop`..."""
    kind: str = rec["kind"]
    if kind in ("send", "deliver", "lost"):
        m = rec["msg"]
        return f"{kind}:{m['mti']}:{m.get('rc', '')}"
    if kind == "journal":
        record = rec.get("record")
        return f"journal:{record.get('type', '') if isinstance(record, dict) else ''}"
    name = _SIGNATURE_FIELD.get(kind)
    return f"{kind}:{rec.get(name, '')}" if name else kind


class Coverage:
    """A trace observer: the distinct transitions of one run (pairs of consecutive
    record signatures), which `target()` maximises to steer Hypothesis towards
    examples that do more different things. In a world of several terminals each
    terminal's records make their own sequence (`term`)."""

    __slots__ = ("faults", "lanes", "last", "pairs")

    def __init__(self) -> None:
        self.last = ""
        self.lanes: dict[str, str] = {}  # term -> its last signature
        self.pairs: set[tuple[str, str]] = set()
        self.faults = 0

    def observe(self, rec: dict[str, Any]) -> None:
        sig = signature(rec)
        if rec["kind"] == "fault":
            self.faults += 1
        term = rec.get("term")
        if term is None:
            self.pairs.add((self.last, sig))
            self.last = sig
        else:
            self.pairs.add((self.lanes.get(term, ""), sig))
            self.lanes[term] = sig


@dataclass(slots=True)
class Stats:
    examples: int = 0
    purchases: int = 0
    kinds: set[str] = field(default_factory=set)
    # Distinct transitions seen over the campaign (see Coverage), for progress.
    behaviours: set[tuple[str, str]] = field(default_factory=set)
    chunks: int = 0
    started_s: float = 0.0
    # When the first failing example ran (before any shrinking): example number
    # and seconds since the start of the campaign.
    first_failure_example: int = 0
    first_failure_s: float = 0.0

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started_s
        return self.examples / elapsed if elapsed > 0 else 0.0


@dataclass(slots=True)
class Found:
    invariant: str
    scenario: Scenario
    result: RunResult
    path: Path
    explanation: str
    elapsed_s: float  # until the shrunk file was written
    examples: int  # examples run, shrinking included
    detect_s: float  # until the first failing example (before shrinking)
    detect_example: int


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing literals of the *imported* local modules into
    its draws while a campaign runs.

    Hypothesis (6.13x on) now and then draws a constant found in the source of
    the non-library modules loaded at the time. Which modules those are depends
    on the entry point (the CLI imports the report modules, a bench script adds
    itself), so the same `--seed` gave different campaigns from `posharness
    fuzz` and from `campaign()`. The pool is emptied for the campaign and
    restored after it. (Private Hypothesis API: without it, nothing changes.)"""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another Hypothesis layout
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    constants = getattr(providers, "Constants", None)
    if original is None or cache is None or constants is None:  # pragma: no cover
        yield
        return
    empty = constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def open_database(url: str | None) -> ExampleDatabase | None:
    """`redis://HOST:PORT/N` shares examples between machines; a path is a local
    directory database; None keeps Hypothesis's default directory."""
    if url is None:
        return DirectoryBasedExampleDatabase(".hypothesis/posharness")
    if url.startswith("redis://"):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise UsageError("--db redis://...: the redis package is not installed") from None
        client = redis.Redis.from_url(url)
        try:
            client.ping()
        except Exception as exc:
            raise UsageError(f"--db {url}: cannot reach Redis: {exc}") from None
        return RedisExampleDatabase(client, key_prefix=b"posharness:")
    return DirectoryBasedExampleDatabase(url)


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return (0, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return (i, n)


def chunk_seed(campaign_seed: int, shard: tuple[int, int], chunk: int) -> int:
    digest = hashlib.sha256(f"{campaign_seed}/{shard[0]}/{shard[1]}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def campaign(
    firmware: str,
    *,
    examples: int | None = None,
    budget_s: float | None = None,
    campaign_seed: int = 0,
    out_dir: Path = Path("fuzz-out"),
    profile: str = "ci",
    shard: tuple[int, int] = (0, 1),
    database: ExampleDatabase | None = None,
    kinds: tuple[str, ...] | None = None,
    on_progress: Callable[[Stats], None] | None = None,
) -> tuple[Found | None, Stats]:
    """Run a campaign. Returns the (shrunk, written) violation found, if any.

    With neither `examples` nor `budget_s`, the profile's time budget applies.
    `database` is used whatever the profile: a caller that names one (`--db`)
    wants failures stored and replayed."""
    load_firmware(firmware)  # a bad spec is a usage error before any work
    features = declared_features(firmware)
    wallets = FEATURE_WALLET in features
    partial = FEATURE_PARTIAL in features
    chip = FEATURE_CHIP in features
    refund = FEATURE_REFUND in features
    offline = FEATURE_OFFLINE in features
    preauth = FEATURE_PREAUTH in features
    prof = PROFILES[profile]
    total = examples
    if examples is None and budget_s is None:
        budget_s = prof.budget_s
    stats = Stats(started_s=time.perf_counter())
    deadline_s = stats.started_s + budget_s if budget_s else None

    def body(sc: Scenario) -> None:
        stats.examples += 1
        stats.purchases += sc.purchases()
        stats.kinds.update(f.KIND for f in sc.faults)
        cov = Coverage()
        try:
            assert_invariants(dataclasses.replace(sc, firmware=firmware), firmware, [cov.observe])
        except InvariantViolated:
            if not stats.first_failure_example:
                stats.first_failure_example = stats.examples
                stats.first_failure_s = time.perf_counter() - stats.started_s
            raise
        finally:
            if len(stats.behaviours) < BEHAVIOURS_MAX:
                stats.behaviours |= cov.pairs
        # Steer generation towards runs that do more different things, and that
        # meet more of their faults.
        target(float(len(cov.pairs)), label="distinct transitions")
        target(float(cov.faults), label="faults applied")

    chunk = 0
    while True:
        if total is not None and stats.examples >= total:
            break
        if deadline_s is not None and time.perf_counter() >= deadline_s:
            break
        size = CHUNK_EXAMPLES if total is None else min(CHUNK_EXAMPLES, total - stats.examples)
        test = settings(
            max_examples=size,
            deadline=None,
            database=database,
            derandomize=False,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.reuse, Phase.generate, Phase.shrink]
            if chunk == 0
            else [Phase.generate, Phase.shrink],
            print_blob=False,
        )(
            seed(chunk_seed(campaign_seed, shard, chunk))(
                given(
                    scenarios(
                        firmware=firmware,
                        kinds=kinds,
                        wallets=wallets,
                        partial=partial,
                        chip=chip,
                        refund=refund,
                        offline=offline,
                        preauth=preauth,
                    )
                )(body)
            )
        )
        before = stats.examples
        try:
            with _no_local_constants():
                test()
        except InvariantViolated as exc:
            elapsed = time.perf_counter() - stats.started_s
            return _report(exc, firmware, out_dir, prof, elapsed, stats), stats
        finally:
            stats.chunks += 1
            if on_progress is not None:
                on_progress(stats)
        if stats.examples == before:
            break  # the strategy is exhausted: nothing more to try
        chunk += 1
    return None, stats


def _report(
    exc: InvariantViolated,
    firmware: str,
    out_dir: Path,
    prof: Profile,
    elapsed: float,
    stats: Stats,
) -> Found:
    invariant = exc.invariant
    sc = dataclasses.replace(exc.result.scenario, firmware=firmware)
    for _ in range(prof.shrink_rounds):
        sc = tidy(sc, invariant, firmware)
    name = f"{_safe(firmware.replace('zoo:', ''))}-{invariant}"
    sc = dataclasses.replace(
        sc,
        name=name,
        seed=sc.seed,
        description=(f"Found by posharness fuzz against {firmware}: breaks {invariant}."),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.toml"
    trace_path = out_dir / f"{name}.jsonl"
    result = run_scenario(sc, firmware, trace_path=trace_path)
    explanation = explain(result, invariant)
    sc = dataclasses.replace(sc, description=f"{sc.description} {explanation}")
    path.write_text(scenario_to_toml(sc), encoding="utf-8")
    return Found(
        invariant,
        sc,
        result,
        path,
        explanation,
        elapsed,
        stats.examples,
        stats.first_failure_s,
        stats.first_failure_example,
    )


def explain(result: RunResult, invariant: str) -> str:
    """One plain paragraph: what broke, and which faults fired on the way."""
    vs = result.violations.get(invariant) or []
    head = vs[0].message if vs else f"{invariant} broke."
    from acquirer.catalogue import AMOUNT_NO_REPLY, AMOUNT_SLOW, amount_rule

    from .invariants import money

    fired = [f.describe() for f in result.scenario.faults]
    for step in result.scenario.steps:
        if step.amount == AMOUNT_NO_REPLY:
            fired.append(
                f"amount {money(step.amount)} is the test host's 'approve, never answer' amount"
            )
        elif step.amount == AMOUNT_SLOW:
            fired.append(
                f"amount {money(step.amount)} is the test host's 'answer 30 s late' amount"
            )
        elif amount_rule(step.amount):
            fired.append(
                f"amount {money(step.amount)} makes the test host answer "
                f"RC {amount_rule(step.amount)}"
            )
    people = []
    if result.scenario.people.retry_on_failed:
        people.append(
            f"the cashier retries after FAILED up to {result.scenario.people.retry_on_failed} times"
        )
    story = "; ".join(fired + people)
    return f"{head} With: {story}." if story else f"{head} With no faults at all."


def timeline(trace_path: Path, limit: int = 60) -> list[str]:
    """The interesting lines of a trace, one short line each, for the terminal."""
    from .invariants import money
    from .trace import read_trace

    keep = {
        "intent",
        "send",
        "deliver",
        "lost",
        "fault",
        "host",
        "display",
        "print",
        "power",
        "crash",
        "cashier",
    }
    lines: list[str] = []
    for rec in read_trace(trace_path):
        kind = rec["kind"]
        if kind not in keep:
            continue
        t = f"{rec['t_ms'] / 1000:8.3f}s #{rec['seq']:<4}"
        if kind in ("send", "deliver", "lost"):
            m: dict[str, Any] = rec["msg"]
            who = rec.get("from") or f"-> {rec.get('to')}"
            what = (
                f"{kind:7} {who:10} {m['mti']} stan={m['stan']} amount={money(m.get('amount', 0))}"
            )
            if m.get("rc"):
                what += f" rc={m['rc']}"
            if m.get("repeat"):
                what += " repeat"
            if kind == "lost":
                what += f" ({rec['reason']})"
        elif kind == "fault":
            what = f"FAULT   {rec['fault']} " + " ".join(
                f"{k}={v}"
                for k, v in rec.items()
                if k not in ("seq", "t_ms", "kind", "fault", "index", "msg")
            )
        elif kind == "host":
            what = f"host    {rec['action']} rc={rec['rc']}" + (
                f" rrn={rec['rrn']}" if rec.get("rrn") else ""
            )
        elif kind == "display":
            outcome, text = str(rec["outcome"]).upper(), str(rec.get("text", ""))
            # "display APPROVED", not "display APPROVED APPROVED".
            what = f"display {outcome}" + (f" {text}" if text and text.upper() != outcome else "")
        elif kind == "print":
            r = rec["receipt"]
            what = (
                f"print   {rec['status']} {r['status']} amount={money(r['amount'])} rrn={r['rrn']}"
            )
        elif kind == "intent":
            what = f"intent  {rec['intent']}: {money(rec['amount'])} on card ...{rec['card'][-4:]}"
        elif kind == "power":
            what = f"power   {rec['state']}"
        else:
            what = f"{kind:7} " + " ".join(
                f"{k}={v}" for k, v in rec.items() if k not in ("seq", "t_ms", "kind")
            )
        lines.append(f"{t} {what}")
        if len(lines) >= limit:
            lines.append("...")
            break
    return lines
