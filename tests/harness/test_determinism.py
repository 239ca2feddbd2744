"""Determinism is the product: same scenario + seed => byte-identical trace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from acquirer import store
from harness.runner import run_scenario
from harness.trace import read_trace
from harness.world import make_host
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


def _traces(paths: list[Path], out: Path) -> list[bytes]:
    out.mkdir()
    traces = []
    for i, path in enumerate(paths):
        r = run_scenario(load_scenario(path), trace_path=out / f"{i}.jsonl")
        assert r.trace_path is not None
        traces.append(r.trace_path.read_bytes())
    return traces


def test_a_reused_in_memory_store_runs_as_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator hands an emptied in-memory host store to the next run (it keeps
    its prepared statements). Every incident, each run on the store the one before
    it used, writes the same trace bytes as on a fresh store."""
    paths = sorted(INCIDENTS.glob("*.toml"))
    assert len(paths) > 50
    with monkeypatch.context() as m:
        m.setattr(store, "MEMORY_POOL_MAX", 0)
        store._pool().clear()
        fresh = _traces(paths, tmp_path / "fresh")
    reused = _traces(paths, tmp_path / "reused")
    assert store._pool(), "the runs left their store for the next"
    for path, a, b in zip(paths, fresh, reused, strict=True):
        assert a == b, path.name


def test_a_closed_host_keeps_no_store() -> None:
    host = make_host(load_scenario(INCIDENTS / "fault-drop.toml"))
    store._pool().clear()
    host.close()
    host.close()  # a second close gives nothing back twice
    assert len(store._pool()) == 1
    with pytest.raises(sqlite3.ProgrammingError):
        host.ledger_sum()
