"""Replay a recorded trace: reproduce it byte for byte, or run its inputs and faults
against another firmware and compare the invariants (before / after the fix).

A trace's first record (kind "run") carries everything a replay needs: the whole
scenario as data, the seed and the firmware spec actually used. The engine is
deterministic, so re-running them must give the same file, byte for byte; when it
does not, the first differing record says where and how.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.loader import scenario_from_dict
from scenarios.model import INVARIANT_NAMES, Scenario, ScenarioError

from .runner import RunResult, UsageError, file_firmware, run_scenario
from .trace import Record, TraceReadError, read_trace

# A divergence report quotes values up to this many characters each.
VALUE_CHARS_MAX = 200


@dataclass(frozen=True, slots=True)
class RunHeader:
    """What a trace's first record says about the run that wrote it."""

    path: Path
    name: str
    seed: int
    firmware: str
    scenario: Scenario
    own_firmware: bool = False  # terminals ran firmwares of their own (not `firmware`)


def read_header(path: Path) -> RunHeader:
    """The run header of `path`. Raises TraceReadError ("file:line: problem")."""
    records = read_trace(path)
    try:
        first = next(records)
    except StopIteration:
        raise TraceReadError(f"{path}:1: empty trace (no run record)") from None
    finally:
        records.close()
    if "steps_streamed" in first:
        return check_trace(path)
    return header_from_record(path, first)


def header_from_record(path: Path, rec: Record) -> RunHeader:
    seed = rec.get("seed")
    firmware = rec.get("firmware")
    data = rec.get("scenario")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TraceReadError(f"{path}:1: run record has no integer seed")
    if not isinstance(firmware, str) or not firmware:
        raise TraceReadError(f"{path}:1: run record has no firmware spec")
    if not isinstance(data, dict):
        raise TraceReadError(f"{path}:1: run record has no scenario table")
    try:
        file_firmware(firmware, f"{path}:1: firmware")
    except UsageError as exc:
        raise TraceReadError(str(exc)) from None
    try:
        scenario = scenario_from_dict(data, f"{path}:1: scenario")
    except ScenarioError as exc:
        raise TraceReadError(str(exc)) from None
    # A world of several terminals whose terminals ran firmwares of their own: the
    # run's firmware did not replace them (see harness/lanes.py).
    own = bool(rec.get("lane_firmware"))
    return RunHeader(path, str(rec.get("name", scenario.name)), seed, firmware, scenario, own)


def check_trace(path: Path) -> RunHeader:
    """Read the whole trace (every line checked) and return its header. A long
    run's steps are streamed as `step` records: they are put back in the scenario."""
    header: RunHeader | None = None
    streamed: list[dict[str, object]] = []
    first: Record | None = None
    for rec in read_trace(path):
        if first is None:
            first = rec
            if "steps_streamed" not in rec:
                header = header_from_record(path, rec)
        elif rec["kind"] == "step" and header is None:
            streamed.append(rec["step"])
    if first is None:
        raise TraceReadError(f"{path}:1: empty trace (no run record)")
    if header is None:
        data = dict(first.get("scenario") or {})
        data["steps"] = streamed
        header = header_from_record(path, {**first, "scenario": data})
    return header


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place where a replay differs from the recording."""

    seq: int  # sequence number (= line) of the first differing record
    what: str  # the differing field as a dotted path, or "record" / "length"
    expected: str  # in the recording
    got: str  # in the replay

    def describe(self) -> str:
        return f"diverges at seq {self.seq}: {self.what}: expected {self.expected}, got {self.got}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > VALUE_CHARS_MAX:
        return text[: VALUE_CHARS_MAX - 3] + "..."
    return text


def _first_difference(expected: Any, got: Any, where: str) -> tuple[str, str, str] | None:
    """The dotted path of the first difference between two JSON values, or None."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in list(expected) + [k for k in got if k not in expected]:
            sub = f"{where}.{key}" if where else str(key)
            if key not in got:
                return sub, _short(expected[key]), "(missing)"
            if key not in expected:
                return sub, "(missing)", _short(got[key])
            found = _first_difference(expected[key], got[key], sub)
            if found is not None:
                return found
        if list(expected) != list(got):
            return where or "record", "keys " + _short(list(expected)), "keys " + _short(list(got))
        return None
    if isinstance(expected, list) and isinstance(got, list):
        for i, (a, b) in enumerate(zip(expected, got, strict=False)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found is not None:
                return found
        if len(expected) != len(got):
            return f"{where} length", str(len(expected)), str(len(got))
        return None
    if expected != got or type(expected) is not type(got):
        return where or "record", _short(expected), _short(got)
    return None


def compare_traces(recorded: Path, replayed: Path) -> Divergence | None:
    """None when the two files are byte-identical, else the first divergence."""
    if recorded.read_bytes() == replayed.read_bytes():
        return None
    old = read_trace(recorded)
    new = read_trace(replayed)
    seq = 0
    while True:
        a = next(old, None)
        b = next(new, None)
        seq += 1
        if a is None and b is None:
            # Same records, different bytes (spacing or key order on disk).
            return Divergence(seq - 1, "bytes", "the recorded encoding", "a different encoding")
        if a is None or b is None:
            return Divergence(
                seq,
                "length",
                "end of trace" if a is None else _short(a.get("kind")) + " record",
                "end of trace" if b is None else _short(b.get("kind")) + " record",
            )
        diff = _first_difference(a, b, "")
        if diff is not None:
            what, exp, got = diff
            kind = a.get("kind", "?")
            return Divergence(int(a.get("seq", seq)), f"{kind}.{what}", exp, got)


@dataclass(slots=True)
class ReplayResult:
    header: RunHeader
    result: RunResult
    divergence: Divergence | None
    trace_out: Path

    @property
    def identical(self) -> bool:
        return self.divergence is None


def replay(path: Path, trace_out: Path | None = None) -> ReplayResult:
    """Re-run the trace's scenario, seed and firmware and compare the new trace."""
    header = check_trace(path)
    with tempfile.TemporaryDirectory(prefix="posharness-replay-") as tmp:
        out = trace_out if trace_out is not None else Path(tmp) / "replay.jsonl"
        firmware = None if header.own_firmware else header.firmware
        result = run_scenario(header.scenario, firmware, seed=header.seed, trace_path=out)
        divergence = compare_traces(path, out)
    return ReplayResult(header, result, divergence, out)


@dataclass(slots=True)
class BeforeAfter:
    header: RunHeader
    before: ReplayResult
    after: RunResult
    required: tuple[str, ...]  # invariants the "after" run must hold

    @property
    def fixed(self) -> bool:
        return self.after.crashes == 0 and not any(
            self.after.violations.get(name) for name in self.required
        )

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(invariant, expectation, before, after) per invariant."""
        sc = self.header.scenario
        out = []
        for name in INVARIANT_NAMES:
            if name in sc.expect.violated:
                expectation = "violated (the incident)"
            elif name in sc.expect.invariants:
                expectation = "holds"
            else:
                expectation = "-"
            out.append(
                (
                    name,
                    expectation,
                    _verdict(self.before.result, name),
                    _verdict(self.after, name),
                )
            )
        return out


def _verdict(result: RunResult, name: str) -> str:
    n = len(result.violations.get(name, []))
    return f"VIOLATED ({n})" if n else "holds"


def before_after(path: Path, firmware: str, trace_out: Path | None = None) -> BeforeAfter:
    """Replay `path` as recorded (before) and with `firmware` (after).

    The "after" run must hold every invariant the scenario names: those it expects
    to hold and those it records as violated by the incident (that is the fix).
    """
    before = replay(path)
    header = before.header
    sc = header.scenario
    after = run_scenario(sc, firmware, seed=header.seed, trace_path=trace_out)
    required = tuple(
        n for n in INVARIANT_NAMES if n in sc.expect.invariants or n in sc.expect.violated
    )
    return BeforeAfter(header, before, after, required)
