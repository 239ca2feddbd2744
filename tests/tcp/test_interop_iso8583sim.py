"""Interoperability with a tool nobody here wrote: iso8583sim (PyPI, AGPL; test use only,
installed into a virtualenv of its own under ~/.cache, never into the project's).

Opt-in: `scripts/test -m interop` (it downloads the tool). Skipped, saying why, when the
tool cannot be installed (no PyPI).
"""

from __future__ import annotations

import json
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
    venv = cache / "posharness" / f"iso8583sim-{VERSION}-security"
    exe = venv / "bin" / "iso8583sim"
    if exe.exists():
        return exe
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        f"iso8583sim[security]=={VERSION}",
    ]
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


def standard_terminals(tmp_path: Path) -> Path:
    """TERM0001 MAC-less (iso8583sim's load and send sign nothing), POS00001 with X9.19."""
    path = tmp_path / "standard.json"
    path.write_text(
        json.dumps({"TERM0001": {"mac": "none"}, "POS00001": {"mac": "x919", "key": X919}})
    )
    path.chmod(0o600)
    return path


X919 = "0123456789ABCDEFFEDCBA9876543210"


def books(db: Path) -> tuple[int, list[tuple[str, int, int, str]]]:
    conn = sqlite3.connect(db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        txns = conn.execute(
            "SELECT terminal_id, COUNT(*), SUM(amount), status FROM txns GROUP BY 1, 4 ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    return ledger, txns


@pytest.mark.parametrize("fmt", ["ascii-binary", "ascii-hex"])
def test_iso8583sim_load_gets_approvals_and_real_books_from_a_standard_terminal(
    tmp_path: Path, fmt: str
) -> None:
    """The tool's own load generator, its defaults but the port: 0100 authorisations with
    public test cards from terminal TERM0001, no MAC, no idempotency key."""
    tool = iso8583sim()
    db = tmp_path / "host.db"
    extra = ["--standard-terminals", str(standard_terminals(tmp_path)), "--rate-limit", "0"]
    with tcp_host_process(db, extra) as url:
        port = url.rsplit(":", 1)[1]
        load = [str(tool), "load", "--port", port, "-n", "300", "-c", "8", "--format", fmt]
        ran = subprocess.run(load, capture_output=True, text=True, timeout=GUARD_S)
    assert ran.returncode == 0, ran.stderr
    text = " ".join(ran.stdout.replace("\u2502", " ").split())
    assert "Responses 300" in text and "Timeouts 0" in text and "00: 300" in text, text
    # STANs 1-300, 10.00 each: 300 sales, each charged once, the ledger balanced.
    assert books(db) == (0, [("TERM0001", 300, 300_000, "approved")])


SIGNED_EXCHANGE = """
import asyncio, sys
from iso8583sim.core.samples import sample_message
from iso8583sim.net.client import ISO8583Client
from iso8583sim.security.mac import sign_message, verify_mac
from iso8583sim.core.builder import ISO8583Builder
from iso8583sim.wire.format import WireFormat

port, key, fmt = int(sys.argv[1]), sys.argv[2], sys.argv[3]

async def main():
    async with ISO8583Client("127.0.0.1", port, wire_format=WireFormat.preset(fmt)) as client:
        for stan, amount, forge in ((1, 2500, False), (2, 2600, True)):
            m = sample_message("financial", amount_minor_units=amount, stan=f"{stan:06d}")
            m.fields[41] = "POS00001"
            sign_message(m, key)
            if forge:
                m.fields[4] = "000000099999"  # changed after signing
            r = await client.send(m)
            mac = r.fields.get(64, "")
            r.network = None  # an answer need not carry what a network asks of requests
            raw = ISO8583Builder().build(r)
            ok = bool(mac) and verify_mac(raw[:-16], mac, key)
            print(r.mti, r.fields.get(39), r.fields.get(4), "mac-ok" if ok else "no-mac")

asyncio.run(main())
"""


@pytest.mark.parametrize("fmt", ["ascii-binary", "ascii-hex"])
def test_iso8583sims_own_x919_mac_signs_requests_and_checks_the_answers(
    tmp_path: Path, fmt: str
) -> None:
    """The MAC computed by an implementation nobody here wrote (iso8583sim.security.mac,
    ISO 9797-1 algorithm 3): a signed sale is approved and its answer verifies under
    the same key; a sale changed after signing is refused, unsigned, and books nothing."""
    tool = iso8583sim()
    db = tmp_path / "host.db"
    extra = ["--standard-terminals", str(standard_terminals(tmp_path))]
    with tcp_host_process(db, extra) as url:
        port = url.rsplit(":", 1)[1]
        script = [str(tool.parent / "python"), "-c", SIGNED_EXCHANGE, port, X919, fmt]
        ran = subprocess.run(script, capture_output=True, text=True, timeout=GUARD_S)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "0210 00 000000002500 mac-ok",
        "0210 30 000000099999 no-mac",
    ]
    assert books(db) == (0, [("POS00001", 1, 2500, "approved")])
