"""`posharness fleet --procs P`: one fleet split over several processes, one verdict.
(Merging the processes' reports: tests/mqtt/test_fleet_remote.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.mqtt.broker import SETUP_HINT, find_mosquitto


@pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)
def test_fleet_split_over_two_processes_keeps_every_invariant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two fleet processes (T0001-T0002 and T0003-T0004) against one host: every
    purchase is offered, completed, approved and judged."""
    code = main(
        ["fleet", "--terminals", "4", "--rate", "20", "--duration", "1", "--procs", "2", "--json"]
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report
    assert report["invariants_ok"] is True
    assert report["offered"] == report["completed"] == 20
    assert report["outcomes"] == {"approved": 20}


def test_fleet_procs_with_faults_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A fault proxy needs one fleet process: --procs 2 --faults exits 2."""
    code = main(["fleet", "--terminals", "4", "--procs", "2", "--faults", "plan.toml"])
    assert code == 2
    assert "--procs 1" in capsys.readouterr().err


@pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)
def test_a_flawed_firmware_fails_the_fleet_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """`--firmware zoo:float-amount` (amounts through a float, off by one minor unit for
    some) is caught by the fleet's own judge from the host's books, and the exit is 1."""
    args = ["fleet", "--terminals", "2", "--rate", "40", "--duration", "1", "--json"]
    code = main([*args, "--firmware", "zoo:float-amount"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1
    assert report["invariants_ok"] is False
    assert report["invariants"]["approved-is-charged"]


def test_fleet_with_an_unknown_firmware_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fleet", "--firmware", "zoo:nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo firmware 'nope'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [("[[faults]]\ndrop = {nth = -1}\n", "nth: must be >= 0"), ("[[faults\n", "Expected")],
)
def test_a_bad_fault_plan_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    assert main(["fleet", "--faults", str(plan)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {plan}: ") and says in err and err.count("\n") == 1
