"""Interoperability with a tool nobody here wrote: iso8583sim (PyPI, AGPL; test use only,
installed into a virtualenv of its own under ~/.cache, never into the project's).

Opt-in: `scripts/test -m interop` (it downloads the tool). Skipped, saying why, when the
tool cannot be installed (no PyPI).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .serving import tcp_host_process

pytestmark = pytest.mark.interop

VERSION = "1.6.0"
ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 120  # a hang becomes a failure after this long; nothing waits for it to pass


def iso8583sim() -> Path:
    """The tool's executable in its own virtualenv (created once); skip if impossible."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "posharness" / f"iso8583sim-{VERSION}"
    exe = venv / "bin" / "iso8583sim"
    if exe.exists():
        return exe
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"iso8583sim=={VERSION}"]
    done = (
        subprocess.run(pip, capture_output=True, text=True, timeout=600)
        if not made.returncode
        else made
    )
    if done.returncode != 0 or not exe.exists():
        pytest.skip(f"iso8583sim {VERSION} could not be installed: {str(done.stderr)[-200:]}")
    return exe


def test_iso8583sim_send_gets_an_approval_from_acquirer_serve_listen(tmp_path: Path) -> None:
    tool = iso8583sim()
    db = tmp_path / "host.db"
    with tcp_host_process(db) as url:
        port = url.rsplit(":", 1)[1]
        make = ["frame", "purchase", "--keys", f"{db}.keys.json", "--amount", "1250"]
        frame = subprocess.run(
            [sys.executable, "-m", "harness.cli", *make],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=GUARD_S,
        ).stdout.strip()  # fmt: skip
        sent = subprocess.run(
            [str(tool), "send", frame, "--port", port, "--format", "ascii-hex", "--header", "2b"],
            capture_output=True, text=True, timeout=GUARD_S,
        )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = " ".join(sent.stdout.replace("\u2502", " ").split())  # without the box edges
    assert "Response code 00: Approved" in text
    conn = sqlite3.connect(db)
    try:
        txns = conn.execute("SELECT amount, status FROM txns").fetchall()
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
    finally:
        conn.close()
    assert (txns, ledger) == ([(1250, "approved")], 0)
