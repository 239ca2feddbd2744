"""The reference firmware behind the exec: pipe protocol, for tests: whatever the
pipe changes (encoding, signing, mac_ok, process restarts) shows up as a trace that
differs from the in-process reference firmware's.

Run as `python tests/exec/pipe_reference.py [FLAW | zoo:NAME]`: FLAW is one of the
protocol misbehaviours below (bad JSON, an unknown effect, a hang...) at the third
event; zoo:NAME runs that flawed zoo firmware instead of the reference.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from acquirer.protocol import Message, sign
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CardPresented,
    ChipResult,
    CodeScanned,
    CompletionRequested,
    ConfirmPressed,
    FirmwareConfig,
    MessageReceived,
    PreauthKeyed,
    PrintFinished,
    PrintStatus,
    RefundRequested,
    ReprintRequested,
    TimerExpired,
    TipAdjustRequested,
    VoidRequested,
)
from terminal.reference import ReferenceFirmware

KEY = b"pipe-local-key"  # the firmware never sees the real key: it re-signs what verified
SIMPLE = {
    "ConfirmPressed": ConfirmPressed,
    "CancelPressed": CancelPressed,
    "ReprintRequested": ReprintRequested,
    "BatchCloseRequested": BatchCloseRequested,
}


def event_of(obj: dict) -> object:
    tp = obj["type"]
    if tp in SIMPLE:
        return SIMPLE[tp]()
    if tp == "Boot":
        return Boot(tuple(obj["journal"]), obj["nonce"], obj.get("clock_ms", 0))
    if tp == "AmountKeyed":
        return AmountKeyed(obj["amount"])
    if tp == "CardPresented":
        return CardPresented(obj["pan"])
    if tp == "CodeScanned":
        return CodeScanned(obj["code"])
    if tp == "ChipResult":
        return ChipResult(obj["key"], obj["ok"], obj["reason"])
    if tp == "VoidRequested":
        return VoidRequested(obj["rrn"])
    if tp == "RefundRequested":
        return RefundRequested(obj["rrn"], obj["amount"])
    if tp == "PreauthKeyed":
        return PreauthKeyed(obj["amount"])
    if tp == "CompletionRequested":
        return CompletionRequested(obj["rrn"], obj["amount"])
    if tp == "TipAdjustRequested":
        return TipAdjustRequested(obj["rrn"], obj["tip"])
    if tp == "TimerExpired":
        return TimerExpired(obj["name"], obj.get("clock_ms", 0))
    if tp == "PrintFinished":
        return PrintFinished(obj["job_id"], PrintStatus(obj["status"]))
    if tp == "MessageReceived":
        msg = Message.from_dict(obj["message"])
        return MessageReceived(sign(msg, KEY) if obj["mac_ok"] else msg)
    raise ValueError(tp)


def effect_out(eff: object) -> dict:
    tp = type(eff).__name__
    if tp == "Send":
        msg = eff.message.to_dict()  # type: ignore[attr-defined]
        msg.pop("mac", None)
        msg.pop("sent_ms", None)
        return {"type": tp, "message": msg}
    if tp == "Print":
        return {"type": tp, "job_id": eff.job_id, "receipt": eff.receipt.to_dict()}  # type: ignore[attr-defined]
    if tp == "Display":
        out = {"type": tp, "outcome": eff.outcome.value, "text": eff.text, "rrn": eff.rrn}  # type: ignore[attr-defined]
        if eff.amount:  # type: ignore[attr-defined]
            out["amount"] = eff.amount  # type: ignore[attr-defined]
        if eff.key:  # type: ignore[attr-defined]
            out["key"] = eff.key  # type: ignore[attr-defined]
        return out
    if tp == "JournalAppend":
        return {"type": tp, "record": dict(eff.record)}  # type: ignore[attr-defined]
    fields = {k: getattr(eff, k) for k in eff.__slots__}  # type: ignore[attr-defined]
    return {"type": tp, **fields}


def main() -> None:
    flaw = sys.argv[1] if len(sys.argv) > 1 else ""
    firmware_class: type = ReferenceFirmware
    if flaw.startswith("zoo:"):
        from terminal.zoo import ZOO

        firmware_class, flaw = ZOO[flaw[4:]], ""
    fw = None
    for raw in sys.stdin:
        obj = json.loads(raw)
        if obj.get("type") == "hello":
            c = obj["config"]
            cfg = FirmwareConfig(
                terminal_id=c["terminal_id"],
                merchant_id=c["merchant_id"],
                mac_key=KEY,
                response_timeout_ms=c["response_timeout_ms"],
                max_sends=c["max_sends"],
                reversal_backoff_ms=tuple(c["reversal_backoff_ms"]),
                reversal_max_tries=c["reversal_max_tries"],
                debounce_ms=c["debounce_ms"],
                amount_max=c["amount_max"],
                status_inquiry=c.get("status_inquiry", True),
                partial_approval=c.get("partial_approval", False),
                chip=c.get("chip", False),
                offline_floor=c.get("offline_floor", 0),
                offline_max=c.get("offline_max", 10),
                offline_deadline_ms=c.get("offline_deadline_ms", 86_400_000),
                extra=c["extra"],
            )
            fw = firmware_class(cfg)
            answer = {
                "type": "hello",
                "protocol": 1,
                "name": "pipe-reference",
                "version": "1",
                "features": sorted(getattr(firmware_class, "features", ())),
            }
            if flaw == "old-protocol":
                answer["protocol"] = 0
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            continue
        assert fw is not None
        n = obj["n"]
        effects = [effect_out(e) for e in fw.handle(event_of(obj))]
        if flaw == "clock":  # reads the wall clock: timers differ from run to run
            for e in effects:
                if e["type"] == "SetTimer":
                    e["delay_ms"] += time.time_ns() % 997
        out = {"n": n, "effects": effects}
        line = json.dumps(out)
        if n == 3 and flaw:
            if flaw == "bad-json":
                line = "{not json"
            elif flaw == "unknown-effect":
                line = json.dumps({"n": n, "effects": [{"type": "Beep"}]})
            elif flaw == "missing-field":
                line = json.dumps({"n": n, "effects": [{"type": "SetTimer", "name": "t"}]})
            elif flaw == "wrong-n":
                line = json.dumps({"n": n + 1, "effects": []})
            elif flaw == "hang":
                signal.pause()  # never answers: the harness must call it unresponsive
            elif flaw == "huge":
                line = "x" * (2 << 20)
            elif flaw == "crash":
                sys.stderr.write("firmware: assertion failed in sale.c:42\n")
                sys.exit(3)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
