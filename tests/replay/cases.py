"""What the incident round-trip tests share: run a built-in scenario and export its
trace as a terminal log and a host log; the (scenario, firmware) pairs to round-trip."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.incidents import trace_to_logs
from harness.runner import run_scenario
from scenarios.loader import load_scenario


def export_run(path: Path, firmware: str, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Run scenario `path` with `firmware` and export its trace: the terminal log, the
    host log, and the invariants the run violated (sorted)."""
    trace = tmp_path / "run.jsonl"
    original = run_scenario(load_scenario(path), firmware, trace_path=trace)
    t_log, h_log = tmp_path / "t.log", tmp_path / "h.log"
    trace_to_logs(trace, t_log, h_log)
    return t_log, h_log, sorted(original.violated())


def catching_cases(
    scenarios: Iterable[Path], zoos: Iterable[str], caught_by: Mapping[str, str]
) -> list[tuple[Path, str]]:
    """Each scenario with the reference, and with every zoo firmware it catches (the
    invariant `caught_by` names for it is violated)."""
    zoos = list(zoos)
    out = []
    for path in scenarios:
        sc = load_scenario(path)
        out.append((path, "reference"))
        for fw in zoos:
            if caught_by[fw[4:]] in run_scenario(sc, fw).violated():
                out.append((path, fw))
    return out
