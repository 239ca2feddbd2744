"""The exec: firmware pipe protocol, version 1 (docs/firmware-protocol.md): events
as JSON lines to the firmware, effects as JSON lines back, strictly checked.

Sans-I/O: `encode_event` and `decode_effects` turn the dataclasses of
terminal/firmware.py into lines and back; harness/exec_firmware.py moves the bytes.
Every problem with what a firmware wrote is a `WireError` naming the field, which
the adapter turns into one sentence with the event number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from acquirer.protocol import (
    AMOUNT_MAX_WIRE,
    Message,
    ProtocolError,
    field_problem,
    sign,
    validate_response,
    verify,
)
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CancelTimer,
    CardPresented,
    ChipComplete,
    ChipResult,
    CodeScanned,
    CompletionRequested,
    ConfirmPressed,
    Display,
    Effect,
    Event,
    FirmwareConfig,
    JournalAppend,
    JournalTrim,
    MessageReceived,
    Outcome,
    PreauthKeyed,
    Print,
    PrintFinished,
    Receipt,
    RefundRequested,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
    TipAdjustRequested,
    VoidRequested,
)

PROTOCOL_VERSION = 1
# Limits on what a firmware may write: a line, the effects of one event, a name.
LINE_BYTES_MAX = 1 << 20
EFFECTS_MAX = 256
NAME_CHARS_MAX = 64
JOURNAL_RECORD_BYTES_MAX = 16 * 1024
DELAY_MS_MAX = 7 * 24 * 3_600_000  # a week of virtual time
_OUTCOMES = {o.value: o for o in Outcome}
_RECEIPT_FIELDS = {
    "status": str,
    "amount": int,
    "rrn": str,
    "stan": int,
    "pan_last4": str,
    "auth_code": str,
    "idem_key": str,
    "copy": bool,
    "orig_rrn": str,
}
_RECEIPT_REQUIRED = ("status", "amount", "rrn", "stan", "pan_last4")


class WireError(Exception):
    """What a firmware wrote breaks the protocol; the message names the field."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def hello(config: FirmwareConfig) -> bytes:
    """The handshake line: the protocol version and the terminal's configuration
    (everything but the MAC key, which the harness keeps)."""
    return _dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "config": {
                "terminal_id": config.terminal_id,
                "merchant_id": config.merchant_id,
                "response_timeout_ms": config.response_timeout_ms,
                "max_sends": config.max_sends,
                "reversal_backoff_ms": list(config.reversal_backoff_ms),
                "reversal_max_tries": config.reversal_max_tries,
                "debounce_ms": config.debounce_ms,
                "amount_max": config.amount_max,
                "status_inquiry": config.status_inquiry,
                "partial_approval": config.partial_approval,
                "chip": config.chip,
                "offline_floor": config.offline_floor,
                "offline_max": config.offline_max,
                "offline_deadline_ms": config.offline_deadline_ms,
                "extra": dict(config.extra),
            },
        }
    )


def hello_features(obj: Any) -> frozenset[str]:
    """The optional "features" of the firmware's hello (checked by `check_hello`)."""
    return frozenset(obj.get("features", ()))


def check_hello(obj: Any) -> tuple[str, str]:
    """The firmware's answer to hello -> (name, version)."""
    if not isinstance(obj, dict) or obj.get("type") != "hello":
        raise WireError('the answer to hello must be {"type": "hello", ...}')
    if obj.get("protocol") != PROTOCOL_VERSION:
        raise WireError(f"protocol: {obj.get('protocol')!r}, the harness speaks {PROTOCOL_VERSION}")
    features = obj.get("features", [])
    if not isinstance(features, list) or not all(
        isinstance(f, str) and 0 < len(f) <= NAME_CHARS_MAX for f in features
    ):
        raise WireError('features must be a list of names (e.g. ["wallet"])')
    name, version = obj.get("name", ""), obj.get("version", "")
    if not isinstance(name, str) or not isinstance(version, str):
        raise WireError("name and version must be strings")
    return name[:NAME_CHARS_MAX], version[:NAME_CHARS_MAX]


def _message_out(msg: Message) -> dict[str, Any]:
    out = msg.to_dict()
    out.pop("mac", None)
    return out


def encode_event(n: int, event: Event, key: bytes) -> bytes:
    """One event as a line, numbered `n`. A received message carries `mac_ok`: the
    MAC verifies with the terminal's key and every field is well formed."""
    tp = type(event)
    if tp is MessageReceived:
        msg = event.message  # type: ignore[union-attr]
        ok = validate_response(msg) is None and verify(msg, key)
        return _dumps(
            {"n": n, "type": "MessageReceived", "message": _message_out(msg), "mac_ok": ok}
        )
    if tp is TimerExpired:
        timer: dict[str, Any] = {"n": n, "type": "TimerExpired", "name": event.name}  # type: ignore[union-attr]
        if event.clock_ms:  # type: ignore[union-attr]
            timer["clock_ms"] = event.clock_ms  # type: ignore[union-attr]
        return _dumps(timer)
    if tp is PrintFinished:
        return _dumps(
            {
                "n": n,
                "type": "PrintFinished",
                "job_id": event.job_id,  # type: ignore[union-attr]
                "status": event.status.value,  # type: ignore[union-attr]
            }
        )
    if tp is AmountKeyed:
        return _dumps({"n": n, "type": "AmountKeyed", "amount": event.amount})  # type: ignore[union-attr]
    if tp is CardPresented:
        return _dumps({"n": n, "type": "CardPresented", "pan": event.pan})  # type: ignore[union-attr]
    if tp is CodeScanned:
        return _dumps({"n": n, "type": "CodeScanned", "code": event.code})  # type: ignore[union-attr]
    if tp is ChipResult:
        chip = {"n": n, "type": "ChipResult", "key": event.key, "ok": event.ok}  # type: ignore[union-attr]
        return _dumps({**chip, "reason": event.reason})  # type: ignore[union-attr]
    if tp is VoidRequested:
        return _dumps({"n": n, "type": "VoidRequested", "rrn": event.rrn})  # type: ignore[union-attr]
    if tp is RefundRequested:
        refund = {"n": n, "type": "RefundRequested", "rrn": event.rrn}  # type: ignore[union-attr]
        return _dumps({**refund, "amount": event.amount})  # type: ignore[union-attr]
    if tp is PreauthKeyed:
        return _dumps({"n": n, "type": "PreauthKeyed", "amount": event.amount})  # type: ignore[union-attr]
    if tp is CompletionRequested:
        done = {"n": n, "type": "CompletionRequested", "rrn": event.rrn}  # type: ignore[union-attr]
        return _dumps({**done, "amount": event.amount})  # type: ignore[union-attr]
    if tp is TipAdjustRequested:
        tip = {"n": n, "type": "TipAdjustRequested", "rrn": event.rrn}  # type: ignore[union-attr]
        return _dumps({**tip, "tip": event.tip})  # type: ignore[union-attr]
    if tp is Boot:
        boot: dict[str, Any] = {
            "n": n,
            "type": "Boot",
            "journal": [dict(r) for r in event.journal],  # type: ignore[union-attr]
            "nonce": event.nonce,  # type: ignore[union-attr]
        }
        if event.clock_ms:  # type: ignore[union-attr]
            boot["clock_ms"] = event.clock_ms  # type: ignore[union-attr]
        return _dumps(boot)
    if tp in (ConfirmPressed, CancelPressed, ReprintRequested, BatchCloseRequested):
        return _dumps({"n": n, "type": tp.__name__})
    raise WireError(f"no wire form for event {event!r}")  # a harness bug


def decode_effects(line: bytes, n: int, config: FirmwareConfig) -> list[Effect]:
    """The firmware's answer to event `n` -> effects (outgoing messages signed with
    the terminal's key). WireError on anything off."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not a JSON line ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(obj, dict):
        raise WireError("the answer must be a JSON object")
    if obj.get("n") != n:
        raise WireError(f"n: {obj.get('n')!r}, expected {n} (answers must follow events in order)")
    effects = obj.get("effects")
    if not isinstance(effects, list):
        raise WireError("effects: missing or not a list")
    if len(effects) > EFFECTS_MAX:
        raise WireError(f"effects: {len(effects)} in one answer (at most {EFFECTS_MAX})")
    return [_effect(e, i, config) for i, e in enumerate(effects)]


def _get(obj: Mapping[str, Any], key: str, tp: type, where: str) -> Any:
    if key not in obj:
        raise WireError(f"{where}.{key}: missing")
    value = obj[key]
    if type(value) is not tp:
        raise WireError(f"{where}.{key}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _only(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise WireError(f"{where}.{extra[0]}: unknown field")


def _name(obj: Mapping[str, Any], key: str, where: str) -> str:
    value: str = _get(obj, key, str, where)
    if not value or len(value) > NAME_CHARS_MAX:
        raise WireError(f"{where}.{key}: 1 to {NAME_CHARS_MAX} characters")
    return value


def _effect(e: Any, i: int, config: FirmwareConfig) -> Effect:
    where = f"effects[{i}]"
    if not isinstance(e, dict):
        raise WireError(f"{where}: not an object")
    kind = e.get("type")
    if kind == "Send":
        _only(e, {"type", "message"}, where)
        return Send(_message(_get(e, "message", dict, where), where + ".message", config))
    if kind == "SetTimer":
        _only(e, {"type", "name", "delay_ms"}, where)
        delay = _get(e, "delay_ms", int, where)
        if not 0 <= delay <= DELAY_MS_MAX:
            raise WireError(f"{where}.delay_ms: {delay} is outside 0..{DELAY_MS_MAX}")
        return SetTimer(_name(e, "name", where), delay)
    if kind == "CancelTimer":
        _only(e, {"type", "name"}, where)
        return CancelTimer(_name(e, "name", where))
    if kind == "JournalAppend":
        _only(e, {"type", "record"}, where)
        record = _get(e, "record", dict, where)
        if len(_dumps(record)) > JOURNAL_RECORD_BYTES_MAX:
            raise WireError(f"{where}.record: over {JOURNAL_RECORD_BYTES_MAX} bytes")
        return JournalAppend(record)
    if kind == "JournalTrim":
        _only(e, {"type", "count"}, where)
        count = _get(e, "count", int, where)
        if count < 0:
            raise WireError(f"{where}.count: negative")
        return JournalTrim(count)
    if kind == "Print":
        _only(e, {"type", "job_id", "receipt"}, where)
        return Print(_name(e, "job_id", where), _receipt(_get(e, "receipt", dict, where), where))
    if kind == "Display":
        _only(e, {"type", "outcome", "text", "rrn", "amount", "key"}, where)
        outcome = _OUTCOMES.get(_get(e, "outcome", str, where))
        if outcome is None:
            raise WireError(f"{where}.outcome: {e['outcome']!r} is not one of {sorted(_OUTCOMES)}")
        text = _get(e, "text", str, where) if "text" in e else ""
        rrn = _get(e, "rrn", str, where) if "rrn" in e else ""
        if len(text) > 200 or len(rrn) > 32:
            raise WireError(f"{where}: text over 200 or rrn over 32 characters")
        amount = _get(e, "amount", int, where) if "amount" in e else 0
        if not 0 <= amount <= AMOUNT_MAX_WIRE:
            raise WireError(f"{where}.amount: must be 0..{AMOUNT_MAX_WIRE}, got {amount}")
        key = _name(e, "key", where) if "key" in e else ""
        return Display(outcome, text, rrn, amount, key)
    if kind == "ChipComplete":
        _only(e, {"type", "key"}, where)
        return ChipComplete(_name(e, "key", where))
    raise WireError(f"{where}.type: {kind!r} is not an effect")


def _receipt(r: dict[str, Any], where: str) -> Receipt:
    where += ".receipt"
    _only(r, set(_RECEIPT_FIELDS), where)
    for key in _RECEIPT_REQUIRED:
        if key not in r:
            raise WireError(f"{where}.{key}: missing")
    values = {key: _get(r, key, tp, where) for key, tp in _RECEIPT_FIELDS.items() if key in r}
    return Receipt(**values)


def _message(m: dict[str, Any], where: str, config: FirmwareConfig) -> Message:
    if "mac" in m or "sent_ms" in m:
        raise WireError(f"{where}: mac and sent_ms are the harness's to set")
    for key in ("mti", "terminal_id", "merchant_id", "stan"):
        if key not in m:
            raise WireError(f"{where}.{key}: missing")
    try:
        msg = Message.from_dict(m)
    except ProtocolError as exc:
        raise WireError(f"{where}: {exc}") from None
    problem = field_problem(msg)
    if problem is not None:
        raise WireError(f"{where}: {problem}")
    return sign(msg, config.mac_key)
