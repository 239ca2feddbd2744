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

from faults.attacker import DeviceSwap
from faults.base import Fault
from scenarios.credits import without_step
from scenarios.model import Scenario, Step
from scenarios.writer import scenario_to_toml
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_OFFLINE,
    FEATURE_PARTIAL,
    FEATURE_PREAUTH,
    FEATURE_REFUND,
    FEATURE_WALLET,
)

from .check import InvariantViolated, assert_invariants, first_failure
from .lanes import fewer_terminals
from .runner import RunResult, UsageError, declared_features, load_firmware, run_scenario
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


def _still_fails(sc: Scenario, invariant: str, firmware: str) -> bool:
    result = run_scenario(sc, firmware)
    failure = first_failure(result)
    return failure is not None and failure[0] == invariant


def _round_ms(value: int) -> list[int]:
    out = []
    for unit in (10_000, 1_000, 100):
        r = round(value / unit) * unit
        if r != value and r not in out:
            out.append(r)
    return out


# Renumbering tried per removal: at most this many variants of the plan's `nth`s.
RENUMBER_VARIANTS_MAX = 64


def renumbered(plan: tuple[Fault, ...]) -> list[tuple[Fault, ...]]:
    """`plan` with the `nth` of its faults lowered, fewest and smallest changes
    first: after a step (or fault) is removed, "the 2nd 0210" may have become the
    1st. The unchanged plan comes first."""
    movable = [i for i, f in enumerate(plan) if f.nth > 1]
    shifts: list[tuple[int, ...]] = [()]
    for i in movable:
        shifts = [(*d, k) for d in shifts for k in range(plan[i].nth)]
    shifts.sort(key=lambda d: (sum(1 for k in d if k), sum(d)))
    out: list[tuple[Fault, ...]] = []
    for d in shifts[:RENUMBER_VARIANTS_MAX]:
        faults = list(plan)
        for i, k in zip(movable, d, strict=True):
            if k:
                faults[i] = dataclasses.replace(faults[i], nth=faults[i].nth - k)
        out.append(tuple(faults))
    return out


def removals(sc: Scenario) -> list[Scenario]:
    """Every scenario with one terminal (`fewer_terminals`), one step or one fault
    fewer, each with the plan's `nth`s
    renumbered every way `renumbered` tries (a scenario keeps at least one step)."""
    out: list[Scenario] = fewer_terminals(sc)
    if len(sc.steps) > 1:
        first = sc.lanes()[0].lane
        for i in range(len(sc.steps) - 1, -1, -1):
            # A payment goes with the steps naming it; later ones are renumbered.
            steps = without_step(sc.steps, i, first)
            out.extend(
                dataclasses.replace(sc, steps=steps, faults=p) for p in renumbered(sc.faults)
            )
    for i in range(len(sc.faults) - 1, -1, -1):
        rest = sc.faults[:i] + sc.faults[i + 1 :]
        out.extend(dataclasses.replace(sc, faults=p) for p in renumbered(rest))
    return out


def minimise(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """Remove steps and faults, renumbering the faults' `nth`, while the scenario
    still breaks `invariant`; then lower each remaining `nth` as far as it goes.
    The result is minimal: no single removal in `removals` still fails."""
    # Each pass removes one item or ends the loop: bounded by the scenario's size.
    for _ in range(len(sc.steps) + len(sc.faults) + len(sc.terminals)):
        for cand in removals(sc):
            if _still_fails(cand, invariant, firmware):
                sc = cand
                break
        else:
            break
    for i, f in enumerate(sc.faults):
        for nth in range(1, f.nth):
            faults = (*sc.faults[:i], dataclasses.replace(f, nth=nth), *sc.faults[i + 1 :])
            cand = dataclasses.replace(sc, faults=faults)
            if _still_fails(cand, invariant, firmware):
                sc = cand
                break
    return sc


def tidy(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """Make a shrunk scenario read well without changing what it shows: drop what
    is not needed (renumbering the faults that count items), round times, drop
    unused cards and seeds."""
    sc = minimise(sc, invariant, firmware)
    # Round step times.
    steps = list(sc.steps)
    for i, step in enumerate(steps):
        for r in _round_ms(step.at_ms):
            trial = [*steps[:i], dataclasses.replace(step, at_ms=max(0, r)), *steps[i + 1 :]]
            trial.sort(key=lambda s: s.at_ms)
            cand = dataclasses.replace(sc, steps=tuple(trial))
            if _still_fails(cand, invariant, firmware):
                sc, steps = cand, trial
                break
    # Round the faults' millisecond parameters.
    plan = list(sc.faults)
    for i, f in enumerate(plan):
        for fld in dataclasses.fields(f):
            if not fld.name.endswith("_ms"):
                continue
            value = getattr(f, fld.name)
            if not isinstance(value, int) or value <= 0:
                continue
            for r in _round_ms(value):
                try:
                    change: dict[str, Any] = {fld.name: r}
                    nf: Fault = dataclasses.replace(f, **change)
                    nf.check()
                except Exception:
                    continue
                cand = dataclasses.replace(sc, faults=tuple([*plan[:i], nf, *plan[i + 1 :]]))
                if _still_fails(cand, invariant, firmware):
                    sc, plan, f = cand, [*plan[:i], nf, *plan[i + 1 :]], nf
                    break
    # Cards nobody uses, and a seed of 0 when the seed does not matter.
    used = {s.card for s in sc.steps}
    cand = dataclasses.replace(sc, cards=tuple(c for c in sc.cards if c.pan in used))
    if _still_fails(cand, invariant, firmware):
        sc = cand
    if sc.seed:
        cand = dataclasses.replace(sc, seed=0)
        if _still_fails(cand, invariant, firmware):
            sc = cand
    return _no_idle_faults(sc, invariant, firmware)


def _idle_faults(sc: Scenario, firmware: str) -> list[int]:
    """The plan indexes of the faults that never applied in a run of `sc`."""
    applied: set[int] = set()

    def seen(rec: dict[str, Any]) -> None:
        if rec["kind"] == "fault":
            applied.add(rec["index"])

    run_scenario(sc, firmware, observers=[seen])
    return [i for i, f in enumerate(sc.faults) if i not in applied and not f.optional]


def _no_idle_faults(sc: Scenario, invariant: str, firmware: str) -> Scenario:
    """A minimal scenario may need a fault that never applies for what it sets off
    on the way: a device swap asks for a batch close, and the swap itself waits for a
    clean close that never comes. Such a swap becomes the `batch_close` step it
    amounted to when that still fails; any other idle fault is marked optional, so
    the file does not fail for it being idle (on the flawed firmware or the fixed)."""
    for i in reversed(_idle_faults(sc, firmware)):
        f = sc.faults[i]
        if isinstance(f, DeviceSwap):
            steps = sorted((*sc.steps, Step(at_ms=f.at_ms, action="batch_close")), key=_at)
            cand = dataclasses.replace(
                sc, steps=tuple(steps), faults=sc.faults[:i] + sc.faults[i + 1 :]
            )
            if _still_fails(cand, invariant, firmware):
                sc = cand
                continue
        optional = dataclasses.replace(f, optional=True)
        sc = dataclasses.replace(sc, faults=(*sc.faults[:i], optional, *sc.faults[i + 1 :]))
    return sc


def _at(step: Step) -> int:
    return step.at_ms


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
