"""Long-running MQTT commands stop cleanly on SIGTERM/SIGINT and keep secrets off argv."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.mqtt.broker import SETUP_HINT, find_mosquitto
from harness.mqtt.wire import BrokerAddress

ROOT = Path(__file__).resolve().parents[2]
# A guard against a hung child, never a timed assertion: a healthy run takes ~1 s.
GUARD_S = 60


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(t) for t in text]
    return out


def _read_until_ready(proc: subprocess.Popen[str]) -> list[str]:
    """Lines up to "ready", read by a thread so that a hung child fails the test."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        for line in stdout:
            lines.put(line.strip())
            if line.strip() == "ready":
                return
        lines.put("")  # end of output

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=GUARD_S)
        except queue.Empty:
            pytest.fail(f"acquirer serve printed no 'ready' line: {seen}")
        if not line:
            pytest.fail(f"acquirer serve exited early: {seen}")
        seen.append(line)
        if line == "ready":
            return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_acquirer_serve_stops_cleanly_leaving_no_broker_or_temp_dir(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """`acquirer serve` without --broker runs a private mosquitto in a temp dir; a signal
    stops the host, the broker and removes the directory, and the exit code is 0."""
    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.mqtt", "acquirer", "serve", "--db", str(tmp_path / "h.db")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_until_ready(proc)
        brokers = _children(proc.pid)
        assert brokers, "the private broker runs as a child process"
        conf_dirs = []
        for pid in brokers:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            conf_dirs += [Path(a.decode()).parent for a in argv if a.endswith(b"mosquitto.conf")]
        assert conf_dirs and all(d.is_dir() for d in conf_dirs)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    for pid in brokers:
        assert not Path(f"/proc/{pid}").exists(), f"broker {pid} left running"
    assert not any(d.exists() for d in conf_dirs), "temporary broker directory left behind"


def test_broker_url_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--broker env:NAME` reads the URL (and its password) from the environment, so a
    child process's password never appears in /proc/PID/cmdline."""
    monkeypatch.setenv("POSH_TEST_BROKER", "mqtt://fleet:s3cret@127.0.0.1:1999")
    addr = BrokerAddress.parse("env:POSH_TEST_BROKER")
    assert (addr.username, addr.password, addr.port) == ("fleet", "s3cret", 1999)
    with pytest.raises(ValueError, match="POSH_NOT_SET"):
        BrokerAddress.parse("env:POSH_NOT_SET")


def test_fleet_children_get_the_broker_password_by_environment_not_argv() -> None:
    from harness.mqtt import fleet_procs as cli

    env = cli._env_with_broker(BrokerAddress("127.0.0.1", 1883, "fleet", "pw123"))
    assert env[cli.BROKER_ENV] == "mqtt://fleet:pw123@127.0.0.1:1883"
    assert os.environ.get(cli.BROKER_ENV) is None


def test_terminal_run_refuses_a_scenario_whose_faults_it_would_ignore(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`terminal run --scenario fault-drop.toml` used to run the purchases and drop the
    faults without a word; now it exits 2 and names the command that applies them."""
    from harness.cli import main

    path = ROOT / "scenarios" / "incidents" / "fault-drop.toml"
    code = main(["terminal", "run", "--scenario", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--transport mqtt" in err
    assert len(err.strip().splitlines()) == 1
