"""Provisioning: `acquirer serve` hands out random MAC keys in a 0600 credentials file,
and `terminal run --credentials` buys with them; nothing is derived from the id."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mqtt.broker import SETUP_HINT, find_mosquitto
from harness.mqtt.host_service import default_mac_key, read_credentials

from .test_shutdown import GUARD_S, ROOT, _read_until_ready


def test_a_credentials_file_with_no_entry_for_the_terminal_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 1, "broker": None, "terminals": {}}))
    with pytest.raises(ValueError, match="no credentials for terminal T0001"):
        read_credentials(str(path), "T0001")
    path.write_text("{")
    with pytest.raises(ValueError, match="cannot read credentials"):
        read_credentials(str(path), "T0001")


def test_terminal_run_with_a_broker_but_no_credentials_is_refused() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.mqtt",
            "terminal",
            "run",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--stdin",
        ],
        cwd=ROOT,
        input="",
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        check=False,
    )
    assert done.returncode == 2
    assert "--broker needs --credentials FILE" in done.stderr


def test_served_terminals_get_random_keys_and_buy_with_the_credentials_file(
    tmp_path: Path,
) -> None:
    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    db = tmp_path / "host.db"
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.mqtt",
            "acquirer",
            "serve",
            "--db",
            str(db),
            "--provision",
            "3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_until_ready(serve)
        creds = Path(f"{db}.terminals.json")
        assert any(str(creds) in line and "--credentials" in line for line in lines), lines
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
        body = json.loads(creds.read_text())
        keys = {t: bytes.fromhex(e["mac_key"]) for t, e in body["terminals"].items()}
        assert sorted(keys) == ["T0001", "T0002", "T0003"]
        assert len(set(keys.values())) == 3 and keys["T0002"] != default_mac_key("T0002")
        assert all(len(k) == 32 for k in keys.values())
        buy = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.mqtt",
                "terminal",
                "run",
                "--id",
                "T0002",
                "--credentials",
                str(creds),
                "--journal",
                str(tmp_path / "t2.db"),
                "--stdin",
            ],
            cwd=ROOT,
            input="1250 4000000000000002\n",
            capture_output=True,
            text=True,
            timeout=GUARD_S,
            check=False,
        )
        assert buy.returncode == 0, buy.stderr
        assert json.loads(buy.stdout.splitlines()[0])["outcome"] == "approved"
    finally:
        serve.terminate()
        serve.communicate(timeout=GUARD_S)
    assert serve.returncode == 0
