"""`posharness fuzz --jobs N`: local shards in parallel processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.fuzz import chunk_seed
from harness.fuzz_jobs import jobs_for, run_jobs, split_examples, sub_shard


def test_jobs_split_a_shard_further_without_overlap() -> None:
    # Two jobs inside shard 1/3 are shards 2/6 and 3/6: disjoint from every other.
    assert [sub_shard((1, 3), j, 2) for j in range(2)] == [(2, 6), (3, 6)]
    every = {sub_shard((i, 3), j, 2) for i in range(3) for j in range(2)}
    assert every == {(k, 6) for k in range(6)}
    seeds = {chunk_seed(0, s, c) for s in every for c in range(20)}
    assert len(seeds) == 6 * 20


def test_examples_are_spread_over_the_jobs() -> None:
    assert [split_examples(10, j, 3) for j in range(3)] == [4, 3, 3]
    assert split_examples(None, 0, 3) is None
    assert jobs_for(3) == 3 and jobs_for(0) >= 1


def test_jobs_find_a_flaw_and_move_its_files_into_out(tmp_path: Path) -> None:
    found, stats = run_jobs(
        "zoo:float-amount",
        2,
        examples=400,
        budget_s=None,
        campaign_seed=0,
        out_dir=tmp_path,
        profile="ci",
        shard=(0, 1),
        db_url=None,
    )
    assert found is not None and found.invariant == "amount-integrity"
    assert found.path == tmp_path / "float-amount-amount-integrity.toml"
    assert found.path.exists()
    assert found.result.trace_path == tmp_path / "float-amount-amount-integrity.jsonl"
    assert found.result.trace_path.exists()
    assert not (tmp_path / ".jobs").exists()
    assert stats.examples >= 1


def test_jobs_run_every_example_when_nothing_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fuzz", "--jobs", "2", "--examples", "40", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "no violation found: 40 examples" in capsys.readouterr().out
    assert main(["fuzz", "--jobs", "-1"]) == 2
