"""Test vectors for the wire protocol: docs/vectors/*.json, generated from the codecs.

`valid.json` holds exchanges a correct terminal and host produce: each request and
its answer as the message (JSON fields), the exact MAC input, the MAC, the ISO 8583
frame and the JSON frame, all for one published test key. A resend is also given
in ISO 8583's repeat-MTI form (0201/0401), which decodes to the same message.
`invalid.json` holds frames a host or terminal must refuse, each with the reason the
project's own decoder or checks give.

The files are meant for other people's tests (a terminal or host written from the
docs) and are checked by the project's own (tests/acquirer/test_vectors.py): the
codecs must reproduce every byte. Regenerate after a deliberate wire change with

    python -m acquirer.vectors --write     # or --check (exit 1 when they drift)

The answers come from the real host (an in-memory `Acquirer` at a fixed time), so
the vectors also pin its decisions: approval, the stored answer to a resend, a
reversal, a batch in balance and one that is not.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer.catalogue import CardAccount
from acquirer.host import Acquirer, HostConfig
from acquirer.testing import TerminalMessages

VECTORS_DIR = Path(__file__).resolve().parents[1] / "docs" / "vectors"
VERSION = 1
TID, MID = "T0001", "M000000000001"
# A published test key: never a real terminal's.
KEY = bytes(range(32))
PAN = "4000000000000002"
NOW_MS = 1_764_700_000_000
TERMINAL = TerminalMessages(TID, MID, KEY)


def _stamped(msg: p.Message) -> p.Message:
    return p.stamp(msg, KEY, NOW_MS)


def _entry(msg: p.Message) -> dict[str, Any]:
    """One message in every form a peer needs."""
    iso = codec.encode(msg)
    out: dict[str, Any] = {
        "message": msg.to_dict(),
        "mac_input": p.mac_payload(msg).decode("utf-8"),
        "mac": msg.mac,
        "mac_ok": p.verify(msg, KEY) if msg.mac else False,
        "iso8583": iso.decode("ascii"),
        "json": codec.to_json(msg).decode("utf-8"),
    }
    base = {v: k for k, v in p.REPEAT_MTIS.items()}
    if msg.repeat and msg.mti in base:
        bare = codec.encode(replace(msg, repeat=False))
        out["iso8583_repeat_mti"] = base[msg.mti] + bare.decode("ascii")[4:]
    return out


def _valid() -> list[dict[str, Any]]:
    host = Acquirer(
        HostConfig(mac_keys={TID: KEY}, freshness_window_ms=0), [CardAccount(PAN, 1_000_000)]
    )
    cases: list[tuple[str, str, p.Message]] = [
        ("echo", "0800 network check", TERMINAL.echo(1)),
        ("purchase", "0200 purchase of 12.50 EUR", TERMINAL.purchase(2, 1250, PAN, "T0001-k-1")),
        (
            "purchase-resend",
            "the same purchase resent after a lost answer: same key, same STAN, repeat set; "
            "the host answers with the stored outcome (same RRN), charging once",
            TERMINAL.purchase(2, 1250, PAN, "T0001-k-1", repeat=True),
        ),
        (
            "reversal",
            "0400 reversal of that purchase: names it by key and STAN, carries its amount",
            TERMINAL.reversal(3, "T0001-k-1", 2, amount=1250, pan=PAN),
        ),
        ("purchase-2", "a second purchase, 3.00 EUR", TERMINAL.purchase(4, 300, PAN, "T0001-k-2")),
        (
            "batch-in-balance",
            "0500 batch close whose totals match the host's: one debit of 3.00",
            TERMINAL.batch(5, 1, debit_count=1, debit_amount=300),
        ),
        (
            "batch-mismatch",
            "0500 batch close of the next batch claiming a debit the host never saw: RC 95",
            TERMINAL.batch(6, 2, debit_count=1, debit_amount=999),
        ),
        (
            "reversal-of-unknown",
            "0400 reversal of a sale the host never saw: RC 25 (unable to locate original); "
            "the host keeps a tombstone so that sale is refused if it arrives later",
            TERMINAL.reversal(7, "T0001-k-9", 8, amount=500, pan=PAN),
        ),
        (
            "preauth",
            "0100 pre-authorisation of 200.00 (a hotel check-in): the host places a hold, "
            "in no batch",
            TERMINAL.preauth(9, 20000, PAN, "T0001-k-3"),
        ),
        (
            "preauth-resend",
            "the same 0100 resent after a lost answer, in its repeat-MTI form 0101: the "
            "stored answer, one hold",
            TERMINAL.preauth(9, 20000, PAN, "T0001-k-3", repeat=True),
        ),
        (
            "completion",
            "0220 completion of that hold for 180.00: processing code 000000, orig_key the "
            "hold's key, a key of its own; the host captures it once (its own RRN)",
            TERMINAL.completion(10, 18000, PAN, "T0001-k-4", "T0001-k-3"),
        ),
        (
            "completion-again",
            "a second completion of the same hold under another key: RC 12, nothing captured",
            TERMINAL.completion(11, 18000, PAN, "T0001-k-5", "T0001-k-3"),
        ),
        (
            "tip-adjust",
            "0220 tip adjust of the completion: processing code 020000, amount the new total "
            "(180.00 + a 20.00 tip), answered with the completion's RRN",
            TERMINAL.adjust(12, 20000, PAN, "T0001-k-6", "T0001-k-4"),
        ),
    ]
    out = []
    for n, (name, about, msg) in enumerate(cases):
        req = _stamped(msg)
        answer = host.handle(req, NOW_MS + n)
        out.append({"name": name, "about": about, "request": _entry(req), "answer": _entry(answer)})
    host.close()
    return out


def _invalid() -> list[dict[str, Any]]:
    good = _stamped(TERMINAL.purchase(2, 1250, PAN, "T0001-k-1"))
    iso = codec.encode(good).decode("ascii")
    js = codec.to_json(good).decode("utf-8")
    forged = replace(good, amount=125000)  # same MAC, new amount: no key needed to try
    frames: list[tuple[str, str, str, str]] = [
        ("iso-unknown-mti", "an MTI the protocol does not have", "iso8583", "0999" + iso[4:]),
        ("iso-truncated", "the frame cut short", "iso8583", iso[:-10]),
        (
            "iso-bad-amount",
            "a letter in field 4",
            "iso8583",
            iso.replace("000000001250", "00000000125X", 1),
        ),
        ("iso-forged-amount", "amount changed, MAC kept", "iso8583", codec.encode(forged).decode()),
        (
            "json-currency-not-3-digits",
            "currency must be 3 digits",
            "json",
            js.replace('"mac"', '"currency":"97","mac"'),
        ),
        (
            "json-stan-as-string",
            "stan must be an integer",
            "json",
            js.replace('"stan":2', '"stan":"2"'),
        ),
        (
            "json-repeat-mti-not-repeat",
            "a repeat MTI with repeat false",
            "json",
            js.replace('"mti":"0200"', '"mti":"0201","repeat":false'),
        ),
        ("json-unknown-field", "a field the protocol does not have", "json", js[:-1] + ',"tip":5}'),
        (
            "json-stan-zero",
            "STAN 000000 numbers no request",
            "json",
            codec.to_json(_stamped(TERMINAL.purchase(0, 1250, PAN, "T0001-k-0"))).decode(),
        ),
    ]
    out = []
    for name, about, kind, frame in frames:
        out.append(
            {"name": name, "about": about, "codec": kind, "frame": frame, **_verdict(kind, frame)}
        )
    return out


def _verdict(kind: str, frame: str) -> dict[str, Any]:
    """What the project's checks say of `frame`: the first refusal, in order."""
    data = frame.encode("utf-8")
    decode = codec.decode if kind == "iso8583" else codec.from_json
    try:
        msg = decode(data)
    except p.ProtocolError as exc:
        return {"refused_by": "decode", "reason": str(exc)}
    problem = p.validate_request(msg)
    if problem is not None:
        return {"refused_by": "validate", "reason": problem}
    if not p.verify(msg, KEY):
        return {"refused_by": "mac", "reason": "MAC does not verify with the terminal's key"}
    return {"refused_by": None, "reason": "accepted"}


def documents() -> dict[str, str]:
    """File name -> text of every vector file."""
    head = {
        "version": VERSION,
        "terminal_id": TID,
        "merchant_id": MID,
        "mac_key_hex": KEY.hex(),
        "mac": "first 16 hex digits of HMAC-SHA256(mac_key, mac_input); see docs/protocol.md",
    }
    docs = {
        "valid.json": {**head, "cases": _valid()},
        "invalid.json": {**head, "cases": _invalid()},
    }
    return {
        name: json.dumps(doc, indent=1, ensure_ascii=False) + "\n" for name, doc in docs.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--write"], ["--check"]):
        print("usage: python -m acquirer.vectors --write | --check", file=sys.stderr)
        return 2
    drift = []
    for name, text in documents().items():
        path = VECTORS_DIR / name
        if args == ["--write"]:
            VECTORS_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            drift.append(str(path))
    if drift:
        print(f"vectors out of date: {', '.join(drift)} (python -m acquirer.vectors --write)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
