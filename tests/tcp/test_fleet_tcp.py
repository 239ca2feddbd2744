"""`posharness fleet --transport tcp`: the fleet's terminals on one TCP connection to the
host in its own process (no broker), judged from the host's books as over MQTT."""

from __future__ import annotations

import json

import pytest

from harness.cli import main

FLEET = ["fleet", "--transport", "tcp", "--terminals", "3", "--rate", "30", "--duration", "1"]


def report(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out


def test_a_tcp_fleet_keeps_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*FLEET, "--json"])
    got = report(capsys)
    assert code == 0, got
    assert got["invariants_ok"] is True
    assert got["offered"] == got["completed"] == 30
    assert got["outcomes"] == {"approved": 30}


def test_a_flawed_firmware_fails_the_tcp_fleet_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """zoo:float-amount takes some amounts off by one minor unit: the books show it."""
    code = main([*FLEET, "--json", "--firmware", "zoo:float-amount", "--rate", "60"])
    got = report(capsys)
    assert code == 1
    invariants = got["invariants"]
    assert isinstance(invariants, dict) and invariants["approved-is-charged"]


@pytest.mark.parametrize("extra", [["--procs", "2"], ["--broker", "mqtt://127.0.0.1:1"]])
def test_what_tcp_fleets_do_not_take_yet_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    assert main([*FLEET, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --transport tcp takes no") and err.count("\n") == 1
