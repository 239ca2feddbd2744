"""A fleet over several machines (`fleet --remote-workers N` / `fleet --join RUN`):
histograms that merge exactly, reports and assignments checked as they cross the
broker, and a run whose workers share nothing with the coordinator but the broker
and the database."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acquirer import pgtesting
from harness.cli import main
from harness.mqtt.broker import SETUP_HINT, PrivateBroker, find_mosquitto
from harness.mqtt.fleet import FleetReport, merge_reports, report_from_wire, report_to_wire
from harness.mqtt.fleet_remote import Assignment, RemoteError
from harness.mqtt.histogram import GROWTH, Histogram, HistogramError

ROOT = Path(__file__).resolve().parents[2]
LATENCIES = st.lists(st.floats(0.05, 600_000, allow_nan=False), min_size=1, max_size=300)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=200, deadline=None)
@given(LATENCIES, LATENCIES, st.sampled_from([0.5, 0.95, 0.99]))
def test_merged_histograms_give_the_percentiles_of_all_values_within_1_percent(
    a: list[float], b: list[float], q: float
) -> None:
    merged = Histogram.of(a)
    merged.merge(Histogram.of(b))
    exact = nearest_rank(a + b, q)
    assert exact / GROWTH <= merged.percentile(q) <= exact * GROWTH
    assert merged.n == len(a) + len(b) and merged.max_ms == max(a + b)


def test_averaging_percentiles_is_what_merging_avoids() -> None:
    fast = [10.0] * 990  # one worker: 990 purchases at 10 ms
    slow = [1000.0] * 10  # another: 10 at 1 s
    merged = Histogram.of(fast)
    merged.merge(Histogram.of(slow))
    averaged = (Histogram.of(fast).percentile(0.99) + Histogram.of(slow).percentile(0.99)) / 2
    assert merged.percentile(0.99) == pytest.approx(10.0, rel=0.01)  # the 990th value of 1000
    assert averaged == pytest.approx(505.0, rel=0.01)  # a latency nobody saw


def test_a_histogram_stays_bounded_however_many_values() -> None:
    h = Histogram.of(float(v) for v in range(1, 200_000, 7))
    h.add(-5.0)
    h.add(1e12)
    assert len(h.counts) < 2_200 and h.max_ms == 3_600_000.0


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"counts": [], "max_ms": 1},
        {"counts": {"x": 1}, "max_ms": 1},
        {"counts": {"5": -1}, "max_ms": 1},
        {"counts": {"5": True}, "max_ms": 1},
        {"counts": {"99999": 1}, "max_ms": 1},
        {"counts": {}, "max_ms": "1"},
    ],
)
def test_a_malformed_histogram_is_refused(bad: object) -> None:
    with pytest.raises(HistogramError):
        Histogram.from_json(bad)


def _report(latencies: list[float], span_s: float, **kw: object) -> FleetReport:
    r = FleetReport(offered=len(latencies), completed=len(latencies), **kw)  # type: ignore[arg-type]
    r.histogram = Histogram.of(latencies)
    r.span_s = span_s
    return r


def test_a_report_crosses_the_wire_and_merges() -> None:
    a = _report([10.0, 30.0], 1.0, outcomes={"approved": 2}, retries=1)
    a.invariants = {"ledger-balances": []}
    b = _report([20.0, 40.0], 2.0, outcomes={"approved": 1, "declined": 1})
    b.invariants = {"ledger-balances": ["ledger sums to 5, not 0"]}
    back = [report_from_wire(json.loads(json.dumps(report_to_wire(r)))) for r in (a, b)]
    m = merge_reports(back)
    assert (m.offered, m.completed, m.retries) == (4, 4, 1)
    assert m.outcomes == {"approved": 3, "declined": 1}
    assert m.latency_ms["p50"] == pytest.approx(20.0, rel=0.01) and m.latency_ms["max"] == 40.0
    assert m.throughput_per_s == pytest.approx(2.0)  # 4 purchases over the longest span, 2 s
    assert not m.invariants_ok


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"completed": -1}, "report.completed"),
        ({"span_s": "1"}, "report.span_s"),
        ({"outcomes": {"approved": 1.5}}, "report.outcomes.approved"),
        ({"invariants": {"x": [1]}}, "report.invariants.x"),
        ({"histogram": None}, "histogram"),
    ],
)
def test_a_malformed_report_names_its_field(change: dict[str, object], field: str) -> None:
    data = {**report_to_wire(_report([5.0], 1.0)), **change}
    with pytest.raises(ValueError, match=field):
        report_from_wire(data)


ASSIGNMENT = {
    "first_terminal": 1,
    "terminals": 2,
    "rate_per_s": 10.0,
    "duration_s": 1.0,
    "codec": "iso8583",
    "timeout_ms": 3000,
    "firmware": "reference",
    "wallet_share": 0.0,
    "volatile_journal": True,
    "schema": "fleet_0123456789ab",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "public; DROP TABLE x"}, "assignment.schema"),
        ({"terminals": 0}, "terminals: expected an integer in 1..9999"),
        ({"rate_per_s": True}, "rate_per_s"),
        ({"codec": "xml"}, "assignment.codec"),
    ],
)
def test_an_assignment_is_checked_before_a_worker_acts_on_it(
    change: dict[str, object], message: str
) -> None:
    assert Assignment.from_wire(ASSIGNMENT).schema == "fleet_0123456789ab"
    with pytest.raises(RemoteError, match=message):
        Assignment.from_wire({**ASSIGNMENT, **change})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remote-workers", "2"], "give --broker URL"),
        (["--remote-workers", "2", "--broker", "mqtt://x"], "give --db postgresql://"),
        (["--join", "r/1", "--broker", "mqtt://x"], "run name 'r/1'"),
        (["--remote-workers", "2", "--join", "r"], "two commands"),
    ],
)
def test_remote_fleet_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", *args]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ end to end


@pytest.fixture
def open_broker() -> Iterator[str]:
    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    with PrivateBroker(auth=False) as b:
        yield b.address().url()


def _worker(run: str, name: str, broker: str, cwd: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`posharness fleet --join` in a process of its own, in a directory of its own:
    it shares nothing with the coordinator but the broker and the database."""
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKER_DB": pgtesting.base_url()}
    cmd = [sys.executable, "-m", "harness.cli", "fleet", "--join", run, "--broker", broker]
    cmd += ["--db", "env:WORKER_DB", "--worker-id", name, "--json", "--join-timeout", "60"]
    return subprocess.Popen([*cmd, *extra], cwd=cwd, env=env, stdout=subprocess.PIPE)


def test_two_workers_join_one_run_and_their_verdicts_merge(
    pg_available: None, open_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = [_worker("t1", f"w{i}", open_broker, tmp_path / f"m{i}") for i in (1, 2)]
    args = ["fleet", "--remote-workers", "2", "--run", "t1", "--broker", open_broker]
    args += ["--db", pgtesting.base_url(), "--terminals", "4", "--rate", "20"]
    code = main([*args, "--duration", "1", "--json", "--join-timeout", "60"])
    outs = [json.loads(w.communicate(timeout=120)[0].decode().splitlines()[-1]) for w in workers]
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report
    assert report["invariants_ok"] is True
    assert report["offered"] == report["completed"] == 20
    assert [o["completed"] for o in outs] == [10, 10]  # each drove its own two terminals
    assert all(w.returncode == 0 for w in workers)
    assert report["latency_ms"]["max"] == max(o["latency_ms"]["max"] for o in outs)


def test_a_worker_runs_only_the_firmware_it_was_started_with(
    pg_available: None, open_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = _worker("t2", "w1", open_broker, tmp_path / "m1", "--firmware", "zoo:no-reversal")
    args = ["fleet", "--remote-workers", "1", "--run", "t2", "--broker", open_broker]
    args += ["--db", pgtesting.base_url(), "--terminals", "2", "--rate", "10", "--duration", "1"]
    assert main([*args, "--join-timeout", "60"]) == 1
    worker.communicate(timeout=120)
    assert worker.returncode == 1
    err = capsys.readouterr().err
    assert "worker w1: the run drives firmware 'reference'" in err
    assert "started with --firmware 'zoo:no-reversal'" in err
