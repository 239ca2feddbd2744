"""Run one scenario with one firmware and judge it: the heart of `posharness run`."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.model import INVARIANT_NAMES, Scenario
from terminal.firmware import (
    FEATURE_CHIP,
    FEATURE_OFFLINE,
    FEATURE_PARTIAL,
    FEATURE_PREAUTH,
    FEATURE_REFUND,
    FEATURE_WALLET,
    FirmwareConfig,
    FirmwareProtocolError,
    firmware_features,
)

from .engine import SimClock
from .invariants import Observations, Violation, check_all
from .lanes import LaneJudge, Lanes, lane_factories
from .trace import Observer, Trace, TraceWriter
from .world import FirmwareFactory, World


class UsageError(Exception):
    """The user asked for something that cannot be (exit 2)."""


def plural(n: int, noun: str, many: str = "") -> str:
    """ "1 sale", "2 sales"; `many` for irregular plurals ("1 entry", "2 entries")."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"


def firmware_names() -> list[str]:
    from terminal.zoo import ZOO

    return ["reference", *(f"zoo:{name}" for name in ZOO)]


def load_firmware(spec: str) -> FirmwareFactory:
    """`reference`, `zoo:NAME`, `module:Class`, `path/to/file.py:Class` or
    `exec:COMMAND ARGS...` (a program in any language, docs/firmware-protocol.md)
    -> a factory.

    `module:Class` is imported with the current directory first on the import path,
    as `python -m` would, so a firmware next to the user's scenarios loads without
    PYTHONPATH. `path/to/file.py:Class` loads that file directly (its directory goes
    on the import path too, so the file may import its sibling modules).
    """
    if spec == "reference":
        from terminal.reference import ReferenceFirmware

        return ReferenceFirmware
    if spec.startswith("zoo:"):
        from terminal.zoo import ZOO

        name = spec[4:]
        if name not in ZOO:
            raise UsageError(f"unknown zoo firmware {name!r} (known: {', '.join(ZOO)})")
        cls: Any = ZOO[name]
        return cls  # type: ignore[no-any-return]
    if spec.startswith("exec:"):
        return _exec_firmware(spec)
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr:
        raise UsageError(
            f"firmware {spec!r}: expected reference, zoo:NAME, module:Class or file.py:Class"
        )
    if module.endswith(".py"):
        mod = _import_file(spec, Path(module))
    else:
        mod = _import_module(spec, module)
    obj = getattr(mod, attr, None)
    if obj is None or not callable(obj):
        raise UsageError(f"firmware {spec!r}: {module!r} has no class {attr!r}")
    return obj  # type: ignore[no-any-return]


def _exec_firmware(spec: str) -> FirmwareFactory:
    """`exec:COMMAND ARGS...`: a firmware process speaking docs/firmware-protocol.md."""
    from .exec_firmware import ExecFactory, parse_exec

    try:
        argv = parse_exec(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    command = argv[0]
    found = shutil.which(command) if os.sep not in command else command
    if found is None or not os.access(found, os.X_OK) or os.path.isdir(found):
        raise UsageError(f"firmware {spec!r}: {command!r} is not an executable program")
    return ExecFactory(spec)


# Files (scenarios, traces, log headers) may come from anyone: a file that names
# `module:Class` chooses code to import and call (`firmware = "sys:exit"`). So a file
# may name only the firmwares posharness ships; other code comes from the command
# line (`--firmware`), or from a file only after `--allow-external-firmware`.
_external_firmware_allowed = False


def allow_external_firmware(allowed: bool = True) -> None:
    """Let files name `module:Class` or `file.py:Class` firmwares (the CLI's
    `--allow-external-firmware`): only for files the user wrote or trusts."""
    global _external_firmware_allowed
    _external_firmware_allowed = allowed


def is_builtin_firmware(spec: str) -> bool:
    return spec == "reference" or spec.startswith("zoo:")


def file_firmware(spec: str, where: str) -> str:
    """`spec` as named by a file at `where`; UsageError if it names outside code."""
    if is_builtin_firmware(spec) or _external_firmware_allowed:
        return spec
    raise UsageError(
        f"{where}: {spec!r} names code outside posharness; a file may name only reference "
        f"or zoo:NAME. Give it on the command line (--firmware {spec}) or, for a file you "
        f"trust, add --allow-external-firmware"
    )


def _on_path(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _import_module(spec: str, module: str) -> Any:
    _on_path(os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"firmware {spec!r}: cannot import {module!r}: {exc} (the current directory "
            f"is on the import path; for a file elsewhere use path/to/file.py:Class)"
        ) from None


def _import_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"firmware {spec!r}: no such file {str(path)!r}")
    resolved = path.resolve()
    _on_path(str(resolved.parent))
    # One module name per file, so two firmwares both called fw.py do not collide.
    name = "posharness_user_fw_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"firmware {spec!r}: {str(path)!r} is not a Python file")
    mod = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = mod
    try:
        loader_spec.loader.exec_module(mod)
    except Exception as exc:  # the user's module failed to import: say so in one line
        del sys.modules[name]
        raise UsageError(
            f"firmware {spec!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return mod


# How a run is judged. EXPECT: against the file's [expect] (a demonstration that
# names violations must show them). FIXED: a recorded incident (its [expect] names
# violations of its original firmware) run with another firmware: is that firmware
# fixed, i.e. does it hold every invariant the file names, violated ones included?
JUDGE_EXPECT = "expect"
JUDGE_FIXED = "fixed"


def judged_as(scenario: Scenario, firmware: str | None) -> str:
    """JUDGE_FIXED when `firmware` replaces the firmware of a recorded incident."""
    # A world of several terminals may name a firmware per terminal: `firmware`
    # replaces them all, so it is another firmware unless it was every one of them.
    used = {t.firmware or scenario.firmware for t in scenario.lanes()}
    other = firmware is not None and used != {firmware}
    return JUDGE_FIXED if other and scenario.expect.violated else JUDGE_EXPECT


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    firmware: str
    seed: int
    violations: dict[str, list[Violation]]
    problems: list[str]  # unmet expectations, in words; empty when the run passed
    sim_ms: int
    wall_s: float
    events: int
    purchases: int
    crashes: int
    trace_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    judged: str = JUDGE_EXPECT
    notes: list[str] = field(default_factory=list)  # worth saying, not a failure
    skipped: str = ""  # why the scenario does not apply to the firmware ("" = it does)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        """PASS / FAIL, or FIXED / STILL FAILING for a recorded incident run with
        another firmware."""
        if self.skipped:
            return "SKIP"
        if self.judged == JUDGE_FIXED:
            return "FIXED" if self.passed else "STILL FAILING"
        return "PASS" if self.passed else "FAIL"

    def violated(self) -> list[str]:
        return [name for name, vs in self.violations.items() if vs]


def trace_file_name(scenario: Scenario, firmware: str, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{scenario.name}--{firmware}--{seed}")
    return f"{safe}.jsonl"


def unique_trace_path(
    trace_dir: Path, scenario: Scenario, firmware: str, seed: int, taken: set[str]
) -> Path:
    """`trace_dir/<name>--<firmware>--<seed>.jsonl`, with `-2`, `-3`... before the
    suffix when a name is in `taken` (the names this batch has used: two scenario
    files with the same name must not overwrite each other's trace). Adds the
    name it returns to `taken`."""
    base = trace_file_name(scenario, firmware, seed)[: -len(".jsonl")]
    name = f"{base}.jsonl"
    n = 1
    while name in taken:
        n += 1
        name = f"{base}-{n}.jsonl"
    taken.add(name)
    return trace_dir / name


def _unapplied(scenario: Scenario, applied: dict[int, int]) -> list[str]:
    """One sentence per fault of the plan that never applied (not marked optional)."""
    out = []
    for i, f in enumerate(scenario.faults):
        if i not in applied and not f.optional:
            out.append(
                f"faults[{i}] {f.describe()} never applied: nothing it matches happened "
                "(fix the trigger, or set optional = true on the fault)"
            )
    return out


def run_scenario(
    scenario: Scenario,
    firmware: str | None = None,
    *,
    seed: int | None = None,
    trace_dir: Path | None = None,
    trace_path: Path | None = None,
    host_db: str = ":memory:",
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Run `scenario` (with `firmware` overriding its own) and judge it.
    `observers` see every trace record too (the fuzzer's coverage)."""
    return run_with_world(
        scenario,
        firmware,
        World,
        SimClock(),
        seed=seed,
        trace_dir=trace_dir,
        trace_path=trace_path,
        host_db=host_db,
        observers=observers,
    )


# Builds the world a run drives: `World` for the simulation, a subclass for a real
# transport (harness/mqtt/scenario_run.py). Called as World is.
WorldMaker = Callable[..., World]


def run_with_world(
    scenario: Scenario,
    firmware: str | None,
    make_world: WorldMaker,
    clock: SimClock,
    *,
    seed: int | None = None,
    trace_dir: Path | None = None,
    trace_path: Path | None = None,
    host_db: str = ":memory:",
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Run `scenario` in the world `make_world` builds, on `clock`, and judge it."""
    if firmware:
        spec = firmware
    else:
        spec = file_firmware(scenario.firmware, f"{scenario.source or scenario.name}: firmware")
    factory = load_firmware(spec)
    run_seed = scenario.seed if seed is None else seed
    several = bool(scenario.terminals)
    if make_world is not World:
        simulation_only(scenario)
    obs: Observations | LaneJudge = LaneJudge(scenario) if several else Observations()
    writer = None
    if trace_path is None and trace_dir is not None:
        trace_path = trace_dir / trace_file_name(scenario, spec, run_seed)
    if trace_path is not None:
        writer = TraceWriter(trace_path)
    applied: dict[int, int] = {}  # plan index -> times the fault applied

    def count_faults(rec: dict[str, Any]) -> None:
        if rec["kind"] == "fault":
            index = rec["index"]
            applied[index] = applied.get(index, 0) + 1

    trace = Trace(clock, [obs.observe, count_faults, *observers], writer)
    started = time.perf_counter()
    factories: list[Any] = [factory]
    maker: Callable[..., Any] = make_world
    if several:
        own = {} if firmware else lane_factories(scenario, _lane_firmware(scenario))
        factories.extend(own.values())
        maker = functools.partial(Lanes, factories=own)
    world = maker(
        scenario,
        factory,
        seed=run_seed,
        trace=trace,
        clock=clock,
        host_db=host_db,
        firmware_spec=spec,
    )
    _attach(obs, world, scenario)
    violations = _run_and_judge(world, obs, scenario, spec, trace, factories)
    wall_s = time.perf_counter() - started
    judged = judged_as(scenario, firmware)
    problems, notes = _problems(scenario, judged, violations, applied)
    if world.crashes:
        problems.append(f"firmware crashed {plural(world.crashes, 'time')}: {obs.crashes[0][1]}")
    skipped = _not_applicable(scenario, world)
    if skipped:
        problems = []
        violations = {name: [] for name in violations}  # not judged: it does not apply
    return RunResult(
        scenario=scenario,
        firmware=spec,
        seed=run_seed,
        violations=violations,
        problems=problems,
        sim_ms=clock.now_ms,
        wall_s=wall_s,
        events=world.sched.executed,
        purchases=world.intents_started,
        crashes=world.crashes,
        trace_path=trace_path,
        judged=judged,
        notes=notes,
        skipped=skipped,
    )


def _run_and_judge(
    world: Any,
    obs: Observations | LaneJudge,
    scenario: Scenario,
    spec: str,
    trace: Trace,
    factories: list[Any],
) -> dict[str, list[Violation]]:
    """Run the world, judge it (violations also go to the trace), and close the
    trace, the host and every firmware factory, whatever happens."""
    try:
        try:
            world.run()
        except FirmwareProtocolError as exc:
            raise UsageError(f"firmware {spec}: {exc}") from None
        if isinstance(obs, LaneJudge):
            violations = obs.evaluate(world.host)
        else:
            violations = check_all(
                obs, world.host, scenario.terminal.id, scenario.expect.settle_within_ms
            )
        for name, vs in violations.items():
            if vs:
                trace.emit(
                    "violation", {"invariant": name, "count": len(vs), "first": vs[0].to_dict()}
                )
    finally:
        trace.close()
        world.host.close()
        for f in factories:
            close = getattr(f, "close", None)
            if close is not None:
                close()  # an exec: firmware's process ends with its run
    return violations


def _attach(obs: Observations | LaneJudge, world: Any, scenario: Scenario) -> None:
    """Point the invariants at the world's host and the terminal's settings."""
    if isinstance(obs, LaneJudge):
        obs.attach(world.host)
        return
    obs.attach(world.host, scenario.terminal.id, scenario.expect.settle_within_ms)
    obs.amount_max = scenario.terminal.amount_max
    obs.response_timeout_ms = scenario.terminal.response_timeout_ms
    t = scenario.terminal
    obs.offline.configure(t.offline_floor, t.offline_max, t.offline_deadline_ms)


def _problems(
    scenario: Scenario,
    judged: str,
    violations: dict[str, list[Violation]],
    applied: dict[int, int],
) -> tuple[list[str], list[str]]:
    """What makes the run fail against the scenario's expectations, and notes."""
    problems: list[str] = []
    notes: list[str] = []
    if judged == JUDGE_FIXED:
        # Fixed or not: every invariant the file names must hold, the incident's too.
        for name in INVARIANT_NAMES:
            if violations.get(name) and (
                name in scenario.expect.invariants or name in scenario.expect.violated
            ):
                problems.append(name)
        # Another firmware may well avoid what a fault waited for (a fixed firmware
        # sends no retry to drop): worth a note, not a failure.
        notes.extend(_unapplied(scenario, applied))
        return problems, notes
    for name in scenario.expect.invariants:
        if violations.get(name):
            problems.append(name)
    for name in scenario.expect.violated:
        if not violations.get(name):
            problems.append(f"expected {name} to be violated, it held")
    problems.extend(_unapplied(scenario, applied))
    return problems, notes


def _not_applicable(scenario: Scenario, world: Any) -> str:
    """Why the run is not judged (it needs a feature the firmware does not declare),
    or ""."""
    missing = sorted(needed_features(scenario) - world.features) if world.fw_seen else []
    if not missing:
        return ""
    what = {
        FEATURE_WALLET: "wallet payments",
        FEATURE_PARTIAL: "partial approvals",
        FEATURE_CHIP: "chip card completion",
        FEATURE_REFUND: "voids and refunds",
        FEATURE_OFFLINE: "offline approvals",
        FEATURE_PREAUTH: "pre-authorisations, completions or tips",
    }
    return f"it has {what[missing[0]]} and the firmware does not declare the {missing[0]!r} feature"


def declared_features(spec: str) -> frozenset[str]:
    """What firmware `spec` declares (one power-on: an exec: firmware is started to
    say hello, then stopped)."""
    factory = load_firmware(spec)
    fw = factory(FirmwareConfig("T0001", "M000000000001", b"probe"))
    try:
        return firmware_features(fw)
    finally:
        for thing in (fw, factory):
            close = getattr(thing, "close", None)
            if close is not None:
                close()


def simulation_only(scenario: Scenario) -> None:
    """UsageError for a scenario a real transport cannot run: several terminals."""
    if scenario.terminals:
        raise UsageError(
            f"{scenario.source or scenario.name}: several terminals ([[terminals]]) run "
            "in the simulation only"
        )


def _lane_firmware(scenario: Scenario) -> Callable[[int, str], FirmwareFactory]:
    """Loads the firmware the i-th terminal of `scenario` names (`[[terminals]]
    firmware`); a UsageError names the file and the key."""
    where = scenario.source or scenario.name

    def load(i: int, name: str) -> FirmwareFactory:
        key = f"{where}: terminals[{i}].firmware"
        try:
            return load_firmware(file_firmware(name, key))
        except UsageError as exc:
            text = str(exc)
            raise UsageError(text if text.startswith(key) else f"{key}: {text}") from None

    return load


def needed_features(scenario: Scenario) -> frozenset[str]:
    """The firmware features `scenario` needs: wallet payments (scan steps), partial
    approvals (a terminal configured to take them), chip card completion (a terminal
    that reads cards by chip)."""
    out = set()
    if any(s.action == "scan" for s in scenario.steps):
        out.add(FEATURE_WALLET)
    if any(t.partial_approval for t in scenario.lanes()):
        out.add(FEATURE_PARTIAL)
    if any(t.chip for t in scenario.lanes()):
        out.add(FEATURE_CHIP)
    if any(s.action in ("void", "refund") for s in scenario.steps):
        out.add(FEATURE_REFUND)
    if any(t.offline_floor > 0 for t in scenario.lanes()):
        out.add(FEATURE_OFFLINE)  # a floor limit makes the terminal offline-capable
    if any(s.action in ("preauth", "complete", "tip") for s in scenario.steps):
        out.add(FEATURE_PREAUTH)
    return frozenset(out)


def run_twice(
    scenario: Scenario,
    firmware: str | None = None,
    *,
    seed: int | None = None,
    trace_path: Path | None = None,
    run: Callable[..., RunResult] | None = None,
) -> RunResult:
    """`run --check-determinism`: run `scenario` twice and compare the traces; a
    difference is a problem naming the first input after which they part."""
    import tempfile

    run = run or run_scenario
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.jsonl", Path(tmp) / "b.jsonl"
        first = run(scenario, firmware, seed=seed, trace_path=a)
        run(scenario, firmware, seed=seed, trace_path=b)
        difference = first_difference(
            a.read_text(encoding="utf-8").splitlines(), b.read_text(encoding="utf-8").splitlines()
        )
        if trace_path is not None:
            trace_path.parent.mkdir(parents=True, exist_ok=True)  # as run_scenario does
            shutil.copyfile(a, trace_path)
            first.trace_path = trace_path
    if difference:
        first.problems.append(f"not deterministic: {difference}")
    return first


def first_difference(a: list[str], b: list[str]) -> str:
    """Where two traces of one run part, in words ("" when they are equal)."""
    last_input = "the start"
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            rx, ry = json.loads(x), json.loads(y)
            return (
                f"the two runs part at trace line {i + 1}, after {last_input}: "
                f"{_gist(rx)} vs {_gist(ry)}"
            )
        rec = json.loads(x)
        if rec.get("kind") == "input":
            last_input = f"event {rec.get('event')} at t={rec.get('t_ms')} ms"
        elif rec.get("kind") == "deliver" and rec.get("to") == "terminal":
            last_input = f"a message at t={rec.get('t_ms')} ms"
    if len(a) != len(b):
        return f"one run has {len(a)} trace lines, the other {len(b)}"
    return ""


def _gist(rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k not in ("seq", "t_ms", "kind")}
    text = json.dumps(body, separators=(",", ":"))
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{rec.get('kind')} at t={rec.get('t_ms')} ms {text}"
