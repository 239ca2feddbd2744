"""Property tests: any event sequence, every firmware, only effects come out.

Events are drawn to reach deep states: host answers are built from messages the
firmware really sent (signed or not, any response code), print results name real
jobs, and power cuts reboot from the journal the effects built.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer.protocol import ALL_MTIS, RESPONSE_CODES, BatchItem, Message, sign
from terminal.firmware import (
    EFFECT_TYPES,
    AmountKeyed,
    BatchCloseRequested,
    CancelPressed,
    CardPresented,
    ConfirmPressed,
    Display,
    FirmwareConfig,
    JournalAppend,
    MessageReceived,
    Outcome,
    Print,
    PrintFinished,
    PrintStatus,
    ReprintRequested,
    TimerExpired,
)
from terminal.reference import ReferenceFirmware
from terminal.testing import FirmwareFactory, Rig, respond, sends
from terminal.zoo import ZOO

CONFIG = FirmwareConfig(reversal_max_tries=4)
# Examples per firmware; raise it for a deep run: POSHARNESS_FW_EXAMPLES=2000 pytest ...
EXAMPLES = int(os.environ.get("POSHARNESS_FW_EXAMPLES", "40"))
FIRMWARES: dict[str, FirmwareFactory] = {"reference": ReferenceFirmware, **ZOO}
RCS = [*RESPONSE_CODES, "", "Z9"]
# Host answers lean towards approval so runs reach receipts, reprints and batches.
REPLY_RCS = ["00"] * len(RCS) + RCS
TIMERS = ["response", "in-progress", "reversal", "batch", "other"]

random_messages = st.builds(
    Message,
    mti=st.sampled_from(ALL_MTIS),
    terminal_id=st.sampled_from(["T0001", "T0002", ""]),
    merchant_id=st.just("M000000000001"),
    stan=st.integers(-1, 8),
    amount=st.integers(-10, 10_000),
    rc=st.sampled_from(RCS),
    rrn=st.text(max_size=4),
    idem_key=st.sampled_from(["", "T0001-0000000001", "T0001-0000000002", "x"]),
    orig_key=st.sampled_from(["", "T0001-0000000001", "T0001-0000000002"]),
    batch_no=st.integers(0, 3),
    items=st.lists(st.builds(BatchItem, st.integers(0, 5), st.integers(-5, 5)), max_size=2).map(
        tuple
    ),
    mac=st.text(max_size=3),
)


def run(factory: FirmwareFactory, data: st.DataObject, steps: int) -> Rig:
    r = Rig(factory, CONFIG)
    for _ in range(steps):
        kind = data.draw(
            st.sampled_from(
                [
                    "amount",
                    "confirm",
                    "cancel",
                    "card",
                    "reply",
                    "random",
                    "timer",
                    "print",
                    "reprint",
                    "batch",
                    "power",
                ]
            )
        )
        if kind == "amount":
            r.feed(AmountKeyed(data.draw(st.integers(-5, 120_000_000))))
        elif kind == "confirm":
            r.feed(ConfirmPressed())
        elif kind == "cancel":
            r.feed(CancelPressed())
        elif kind == "card":
            r.feed(CardPresented(data.draw(st.sampled_from(["", "4000000000000002", "12"]))))
        elif kind == "reply" and sends(r.log):
            request = data.draw(st.sampled_from(sends(r.log)))
            reply = respond(request, CONFIG.mac_key, data.draw(st.sampled_from(REPLY_RCS)))
            if data.draw(st.integers(0, 3)) == 0:
                reply = replace(reply, mac="")  # unsigned
            r.feed(MessageReceived(reply))
        elif kind == "random":
            msg = data.draw(random_messages)
            if data.draw(st.booleans()):
                msg = sign(msg, CONFIG.mac_key)
            r.feed(MessageReceived(msg))
        elif kind == "timer":
            r.feed(TimerExpired(data.draw(st.sampled_from(TIMERS))))
        elif kind == "print":
            jobs = [e.job_id for e in r.log if isinstance(e, Print)] + ["nope"]
            status = data.draw(st.sampled_from(list(PrintStatus)))
            r.feed(PrintFinished(data.draw(st.sampled_from(jobs)), status))
        elif kind == "reprint":
            r.feed(ReprintRequested())
        elif kind == "batch":
            r.feed(BatchCloseRequested())
        elif kind == "power":
            r.power_cut()
    return r


@pytest.mark.parametrize("name", list(FIRMWARES))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_event_sequence_never_raises_and_yields_only_effects(
    name: str, data: st.DataObject
) -> None:
    r = run(FIRMWARES[name], data, steps=data.draw(st.integers(1, 60)))
    assert all(isinstance(effect, EFFECT_TYPES) for effect in r.log)


@settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reference_prints_only_journaled_approvals_and_never_approves_a_reversed_sale(
    data: st.DataObject,
) -> None:
    """Safety of the reference under any sequence: receipts come from approval records
    (same RRN and amount) of sales never marked for reversal, and every approval display
    follows its journal record."""
    r = run(ReferenceFirmware, data, steps=data.draw(st.integers(1, 80)))
    approved: dict[str, tuple[str, int]] = {}
    reversing: set[str] = set()
    for effect in r.log:
        if isinstance(effect, JournalAppend):
            record = effect.record
            if record["type"] == "approved":
                approved[record["key"]] = (record["rrn"], record["amount"])
            elif record["type"] == "reversal_pending":
                reversing.add(record["key"])
        elif isinstance(effect, Print):
            receipt = effect.receipt
            assert approved.get(receipt.idem_key) == (receipt.rrn, receipt.amount)
            assert receipt.idem_key not in reversing
        elif isinstance(effect, Display) and effect.outcome is Outcome.APPROVED:
            assert effect.rrn in {rrn for rrn, _ in approved.values()}
    assert not (set(approved) & reversing)
    # No zero or negative amount ever leaves the reference terminal.
    assert all(m.amount > 0 for m in sends(r.log) if m.mti == "0200")
