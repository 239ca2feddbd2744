"""A terminal nobody here wrote the code of: examples/terminal-js, written from
docs/protocol.md alone (JavaScript, MQTT.js, Node's crypto), against `acquirer serve`.

It runs echo, purchase, a resend in both forms (repeat flag and 0201), a reversal, a
second purchase, a batch close and a reversal of an unknown sale, and checks every answer
as the spec tells a terminal to (signed with its key, echoing its request, the expected
code). Here the host's books are checked too: one sale reversed, one charged, balanced.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.mqtt.broker import SETUP_HINT, find_mosquitto

from .test_shutdown import GUARD_S, ROOT, _read_until_ready

TERMINAL_JS = ROOT / "examples" / "terminal-js"


def _node_ready() -> str | None:
    """Why the JS terminal cannot run here, or None (installs MQTT.js once, with npm)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm not installed: scripts/setup-examples installs nodejs"
    if (TERMINAL_JS / "node_modules" / "mqtt").is_dir():
        return None
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
        cwd=TERMINAL_JS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return f"npm could not install MQTT.js (no npm registry?): {done.stderr.strip()[:200]}"
    return None


def _serve_and_run_js(db: Path, keys: Path, tid: str) -> subprocess.CompletedProcess[str]:
    """`acquirer serve --db DB` (private broker), then the JS terminal as `tid`."""
    serve = ["acquirer", "serve", "--db", str(db), "--provision", "1"]
    host = subprocess.Popen(
        [sys.executable, "-m", "harness.mqtt", *serve],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_until_ready(host)
        [serving] = [line for line in lines if line.startswith("acquirer: serving ")]
        env = {
            **os.environ,
            "POSH_BROKER_URL": serving.split()[2],
            "POSH_KEYS": str(keys),
            "POSH_TID": tid,
        }
        return subprocess.run(
            ["node", str(TERMINAL_JS / "terminal.js")],
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD_S,
        )
    finally:
        host.terminate()
        host.communicate(timeout=GUARD_S)


def _skip_unless_ready() -> None:
    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    why = _node_ready()
    if why is not None:
        pytest.skip(why)


def test_a_terminal_written_from_the_spec_alone_gets_every_answer_right(tmp_path: Path) -> None:
    _skip_unless_ready()
    db = tmp_path / "host.db"
    run = _serve_and_run_js(db, Path(f"{db}.keys.json"), "T0001")
    assert run.returncode == 0, run.stderr
    steps = [line.split()[0] for line in run.stdout.splitlines()]
    assert steps == [
        "echo",
        "purchase",
        "purchase-resend",
        "purchase-resend-0201",
        "reversal",
        "purchase-2",
        "batch",
        "reversal-of-unknown",
    ]
    rrns = {line.split()[0]: line.split()[-1] for line in run.stdout.splitlines()}
    assert rrns["purchase"] == rrns["purchase-resend"] == rrns["purchase-resend-0201"]
    conn = sqlite3.connect(db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        txns = conn.execute("SELECT amount, status FROM txns ORDER BY id").fetchall()
    finally:
        conn.close()
    assert ledger == 0
    assert txns == [(1250, "reversed"), (300, "approved")]


def test_a_provisioned_terminal_connects_with_its_own_credentials_file(tmp_path: Path) -> None:
    """`acquirer provision` writes a credentials file (0600) holding only that terminal's
    entry; with it alone, the terminal logs in to the broker and is served."""
    _skip_unless_ready()
    db, creds = tmp_path / "host.db", tmp_path / "t0101.json"
    argv = ["acquirer", "provision", "--db", str(db), "--terminal", "T0101", "--out", str(creds)]
    assert main(argv) == 0
    assert creds.stat().st_mode & 0o777 == 0o600
    assert list(json.loads(creds.read_text())) == ["T0101"]
    run = _serve_and_run_js(db, creds, "T0101")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "reversal-of-unknown rc=25"


def test_provisioning_refusals_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "host.db")
    first = ["acquirer", "provision", "--db", db, "--terminal", "T0101"]
    assert main([*first, "--out", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    cases = [
        ([*first, "--out", str(tmp_path / "b.json")], "already provisioned"),
        ([*first, "--out", str(tmp_path / "a.json")], "exists"),
        (["acquirer", "provision", "--db", db, "--terminal", "T-1", "--out", "c"], "1-8 letters"),
    ]
    for argv, why in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err
    assert not (tmp_path / "b.json").exists()
