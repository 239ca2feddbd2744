"""Determinism is the product: same scenario + seed => byte-identical trace."""

from __future__ import annotations

from pathlib import Path

from harness.runner import run_scenario
from harness.trace import read_trace
from scenarios.loader import load_scenario

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


def test_two_runs_write_identical_trace_bytes(tmp_path: Path) -> None:
    for name in ("fault-partition.toml", "dup-power-cut-mid-sale.toml", "batch-reversed-sale.toml"):
        sc = load_scenario(INCIDENTS / name)
        a = run_scenario(sc, trace_path=tmp_path / f"a-{name}.jsonl")
        b = run_scenario(sc, trace_path=tmp_path / f"b-{name}.jsonl")
        assert a.trace_path is not None and b.trace_path is not None
        data = a.trace_path.read_bytes()
        assert data == b.trace_path.read_bytes()
        assert data.count(b"\n") > 20


def test_trace_lines_are_numbered_records_with_virtual_time(tmp_path: Path) -> None:
    sc = load_scenario(INCIDENTS / "fault-drop.toml")
    r = run_scenario(sc, trace_path=tmp_path / "t.jsonl")
    assert r.trace_path is not None
    records = list(read_trace(r.trace_path))
    assert [rec["seq"] for rec in records] == list(range(1, len(records) + 1))
    times = [rec["t_ms"] for rec in records]
    assert times == sorted(times)
    assert records[0]["kind"] == "run" and records[0]["seed"] == sc.seed
    assert records[-1]["kind"] in ("end", "violation")


def test_a_different_seed_changes_a_jittery_run(tmp_path: Path) -> None:
    import dataclasses

    from scenarios.model import NetworkSpec

    sc = load_scenario(INCIDENTS / "fault-duplicate.toml")
    sc = dataclasses.replace(sc, network=NetworkSpec(latency_ms=40, jitter_ms=30))
    a = run_scenario(sc, seed=1, trace_path=tmp_path / "1.jsonl")
    b = run_scenario(sc, seed=2, trace_path=tmp_path / "2.jsonl")
    c = run_scenario(sc, seed=1, trace_path=tmp_path / "1b.jsonl")
    assert a.trace_path and b.trace_path and c.trace_path
    assert a.trace_path.read_bytes() == c.trace_path.read_bytes()

    def body(p: Path) -> bytes:  # everything after the header line, which names the seed
        return p.read_bytes().split(b"\n", 1)[1]

    assert body(a.trace_path) != body(b.trace_path)
