"""Interoperability with a tool nobody here wrote: iso8583sim (PyPI, AGPL; test use only,
installed into a virtualenv of its own under ~/.cache, never into the project's).

Opt-in: `scripts/test -m interop` (it downloads the tool). Skipped, saying why, when the
tool cannot be installed (no PyPI).
"""

from __future__ import annotations

import json
import os
import socket
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


RULES = {
    "rules": [
        # The 77.00 sale is never answered (its reversal is); 51.00 is declined.
        {
            "match": {"mti": ["0200", "0201"], "amount_gt": 7699, "amount_lt": 7701},
            "action": "drop",
        },
        {"match": {"amount_gt": 5099, "amount_lt": 5101}, "respond": "51"},
    ]
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_reference_terminal_against_iso8583sims_host(tmp_path: Path) -> None:
    """`terminal run --standard-host` against `iso8583sim serve`, a rule-based host nobody
    here wrote: an approval printed, a decline shown, a sale the host never answers timed
    out, shown FAILED and reversed (the host answers the 0400), the next sale approved."""
    tool = iso8583sim()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"T0001": {"mac_key": "ab" * 32}}))
    keys.chmod(0o600)
    link_file = tmp_path / "link.json"  # this terminal's link to the host: MAC-less
    link_file.write_text(json.dumps({"T0001": {"mac": "none"}}))
    link_file.chmod(0o600)
    script = tmp_path / "script.txt"
    script.write_text("".join(f"{a} 4000000000000002\n" for a in (1000, 5100, 7700, 1200)))
    port = free_port()
    host = subprocess.Popen(
        [str(tool), "serve", "--port", str(port), "--format", "ascii-hex", "--rules", str(rules)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert host.stdout is not None
        assert "listening" in host.stdout.readline()  # it prints this once it serves
        run = [
            sys.executable, "-m", "harness.cli", "terminal", "run",
            "--host", f"tcp://127.0.0.1:{port}", "--standard-host", str(link_file),
            "--keys", str(keys), "--id", "T0001", "--journal", str(tmp_path / "j.db"),
            "--script", str(script), "--timeout-ms", "500",
        ]  # fmt: skip
        ran = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=GUARD_S)
    finally:
        host.terminate()
        host.communicate(timeout=GUARD_S)
    assert ran.returncode == 1, ran.stderr  # two sales were not approved
    lines = [json.loads(x) for x in ran.stdout.splitlines()]
    outcomes = [(x["amount"], x["outcome"]) for x in lines if "outcome" in x]
    assert outcomes == [
        (1000, "approved"),
        (5100, "declined"),
        (7700, "failed"),
        (1200, "approved"),
    ]
    receipts = [x["receipt"] for x in lines if "receipt" in x]
    assert [(r["amount"], r["status"]) for r in receipts] == [
        (1000, "approved"),
        (1200, "approved"),
    ]
    link = next(x["link"] for x in lines if "link" in x)
    assert link["sent_0201"] >= 1 and link["sent_0400"] >= 1  # resent, then reversed
    assert link["answered_0410"] == 1  # the reversal was answered: the terminal is done
    assert "UNSIGNED" in ran.stderr
