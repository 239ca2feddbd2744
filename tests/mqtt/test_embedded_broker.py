"""The zero set-up broker: the embedded Python broker (amqtt) carries a purchase."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from acquirer.catalogue import PAN_APPROVE

EMBEDDED_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from acquirer.testing import fixed_test_mac_key
from harness.mqtt.broker import EmbeddedBroker
from harness.mqtt.host_service import HostService
import tests_mqtt_stack as t

async def main(host_db, tmp):
    with EmbeddedBroker() as embedded:
        async with asyncio.timeout(t.SAFETY_S), HostService(embedded.address("acquirer"), host_db):
            cfg = t.terminal_config("T0001", fixed_test_mac_key("T0001"))
            journal = t.Journal(str(Path(tmp) / "t.db"))
            client, drv = t.single_terminal(
                embedded.address("T0001"), t.ReferenceFirmware(cfg), cfg, journal, codec="json"
            )
            async with client:
                drv.boot()
                intent = await drv.purchase(1250, t.PAN_APPROVE)
                await drv.idle.wait()
            journal.close()
    print(json.dumps({"outcome": intent.outcome, "receipts": [r.amount for r in drv.receipts]}))

asyncio.run(main(sys.argv[2], sys.argv[3]))
"""


def test_approval_through_the_embedded_broker(host_db: str, tmp_path: Path) -> None:
    """Zero set-up mode: with no mosquitto, the embedded Python broker (amqtt) carries
    the same purchase end to end. It runs in a child process: amqtt leaves sockets for
    the garbage collector, which pytest (warnings as errors) would blame on us."""
    pytest.importorskip(
        "amqtt", reason="amqtt not installed: pip install 'posharness[mqtt-embedded]'"
    )
    import json
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    shutil.copy(Path(__file__).with_name("test_mqtt_stack.py"), tmp_path / "tests_mqtt_stack.py")
    env_path = f"{root}{os.pathsep}{tmp_path}"
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            EMBEDDED_SCRIPT,
            str(tmp_path),
            host_db,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": env_path},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"outcome": "approved", "receipts": [1250]}
    conn = sqlite3.connect(host_db)
    try:
        ledger = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
        charged = conn.execute(
            "SELECT balance - initial FROM accounts WHERE account = ?", (PAN_APPROVE,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert (ledger, charged) == (0, -1250)
