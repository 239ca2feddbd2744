"""The MQTT host's wallet orders: frames in, the phones moved by `wallet_tick`."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from acquirer.catalogue import CODE_CONFIRMS, CONFIRM_MS, PAN_APPROVE
from acquirer.protocol import (
    MTI_INQUIRY,
    MTI_PURCHASE,
    PROC_WALLET,
    RC_APPROVED,
    RC_IN_PROGRESS,
    Message,
    sign,
)
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import wire
from harness.mqtt.cli import _purchases
from harness.mqtt.host_service import HostCore, Reply
from harness.mqtt.hostdb import fleet_code, open_acquirer, provision

T0 = 1_000_000_000
KEY = fixed_test_mac_key("T0001")


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


def _frame(msg: Message) -> bytes:
    return wire.encode(sign(msg, KEY), "iso8583")


def _rc(out: object) -> str:
    assert isinstance(out, Reply)
    return wire.decode(out.payload)[0].rc


def test_the_phone_confirms_on_the_hosts_tick_and_the_inquiry_sees_it(tmp_path: Path) -> None:
    db = str(tmp_path / "host.db")
    provision(db, {"T0001": KEY})
    clock = Clock()
    actions: list[str] = []
    core = HostCore(
        open_acquirer(db), clock_ms=clock, on_action=lambda m, a: actions.append(a.action)
    )
    pay = Message(
        MTI_PURCHASE,
        "T0001",
        "M1",
        1,
        pan=CODE_CONFIRMS,
        processing_code=PROC_WALLET,
        amount=1250,
        idem_key="order-1",
        sent_ms=T0,
    )
    out = core.handle("T0001", _frame(pay))
    if not isinstance(out, Reply):  # accepted for processing: finish it
        assert out is not None
        out = core.finish(out)
    assert _rc(out) == RC_IN_PROGRESS
    assert core.wallet_tick() == 0  # nothing due yet
    clock.now_ms = T0 + CONFIRM_MS
    assert core.wallet_tick() == 1 and actions[-1] == "charge"
    query = Message(MTI_INQUIRY, "T0001", "M1", 1, orig_key="order-1", sent_ms=T0 + CONFIRM_MS)
    assert _rc(core.handle("T0001", _frame(query))) == RC_APPROVED
    assert core.acquirer.balance(CODE_CONFIRMS) < core.acquirer.initial_balance(CODE_CONFIRMS)


def test_terminal_run_scripts_take_wallet_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = argparse.Namespace(scenario=None, script=None, stdin=False)
    assert _purchases(plain) == [(1250, PAN_APPROVE, "purchase")]
    lines = ["SCAN 990 280000000000000002", "SCAN 500", "700", "BATCH", "PREAUTH 3000"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines)))
    got = _purchases(argparse.Namespace(scenario=None, script=None, stdin=True))
    assert got == [
        (990, "280000000000000002", "scan"),
        (500, "280000000000000001", "scan"),
        (700, PAN_APPROVE, "purchase"),
        None,
        (3000, PAN_APPROVE, "preauth"),
    ]


def test_fleet_wallet_codes_do_not_shadow_the_catalogue() -> None:
    assert fleet_code(2) != CODE_CONFIRMS and len(fleet_code(999)) == 18
