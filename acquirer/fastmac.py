"""A faster, byte-identical version of `protocol.compute_mac` for the host's hot path.

`protocol.compute_mac` walks `dataclasses.fields` on every call; the host signs
and verifies tens of thousands of messages per second, so this module builds the
same payload with one f-string. The import-time check below and the tests in
tests/acquirer keep the two in step if `Message` ever gains or reorders a field.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import fields

from acquirer.protocol import Message

_EXPECTED_FIELDS = [
    "mti",
    "terminal_id",
    "merchant_id",
    "stan",
    "pan",
    "processing_code",
    "amount",
    "currency",
    "rrn",
    "rc",
    "auth_code",
    "idem_key",
    "repeat",
    "orig_stan",
    "orig_key",
    "debit_count",
    "debit_amount",
    "credit_count",
    "credit_amount",
    "batch_no",
    "items",
    "mac",
]
if [f.name for f in fields(Message)] != _EXPECTED_FIELDS:  # pragma: no cover
    raise ImportError("acquirer.fastmac is out of step with protocol.Message: update it")


def _payload(m: Message) -> bytes:
    items = ";".join(f"{i.stan},{i.amount},{i.rrn}" for i in m.items) if m.items else ""
    return (
        f"mti={m.mti}|terminal_id={m.terminal_id}|merchant_id={m.merchant_id}|stan={m.stan}|"
        f"pan={m.pan}|processing_code={m.processing_code}|amount={m.amount}|"
        f"currency={m.currency}|rrn={m.rrn}|rc={m.rc}|auth_code={m.auth_code}|"
        f"idem_key={m.idem_key}|repeat={m.repeat}|orig_stan={m.orig_stan}|"
        f"orig_key={m.orig_key}|debit_count={m.debit_count}|debit_amount={m.debit_amount}|"
        f"credit_count={m.credit_count}|credit_amount={m.credit_amount}|"
        f"batch_no={m.batch_no}|items={items}"
    ).encode()


def compute_mac(msg: Message, key: bytes) -> str:
    """Same result as `protocol.compute_mac`."""
    return hmac.digest(key, _payload(msg), hashlib.sha256).hex()[:16]


def sign(msg: Message, key: bytes) -> Message:
    """Same result as `protocol.sign`."""
    m = msg
    # Positional construction: `dataclasses.replace` costs ~10 us on a 22-field message.
    return Message(
        m.mti,
        m.terminal_id,
        m.merchant_id,
        m.stan,
        m.pan,
        m.processing_code,
        m.amount,
        m.currency,
        m.rrn,
        m.rc,
        m.auth_code,
        m.idem_key,
        m.repeat,
        m.orig_stan,
        m.orig_key,
        m.debit_count,
        m.debit_amount,
        m.credit_count,
        m.credit_amount,
        m.batch_no,
        m.items,
        compute_mac(m, key),
    )


def verify(msg: Message, key: bytes) -> bool:
    """Same result as `protocol.verify`."""
    return bool(msg.mac) and hmac.compare_digest(msg.mac, compute_mac(msg, key))
