"""The terminal's side of a plain ISO 8583:1987 link: a posharness terminal against a host
nobody here wrote (`terminal run --host tcp://... --standard-host FILE`). Sans-I/O.

The firmware keeps speaking this protocol; `StandardHostLink` sits where its transport
writes and reads frames. Each request it writes is turned into a plain 1987 message
(acquirer/iso87.py), signed with an ISO 9797-1 algorithm 3 (X9.19) MAC in field 64 when
the file gives the terminal a key, or sent MAC-less when the file says `"mac": "none"`
(said at start-up and on every warning). Each answer it reads is checked the same way
(an x919 answer without a good MAC is dropped, as a forged one), matched to the request
it answers by terminal, STAN and MTI, and given to the firmware as this protocol's
answer: the request's own fields (key, original's key and STAN), what the host decided
(field 39, 38, 37) and what it echoed (PAN, amount, processing code, currency, which the
firmware compares with its request), signed with the terminal's key on the host's
behalf: the link vouches for an answer it has authenticated, or, MAC-less, for one it
could not.

The same config file as the host side's `--standard-terminals` (harness/tcp/standard.py).

Mapping (docs/tcp.md, "A terminal against a host nobody here wrote"):
- 0200 (a resend: 0201) -> 0200/0201 with fields 2, 3, 4, 11, 41, 42, 49; the
  idempotency key stays at the terminal (a plain host has none).
- 0400/0420 (repeats 0401/0421) -> the same MTI with field 90 (original data elements:
  0200, the original's STAN, zeros) besides the sale's fields.
- 0500 -> 0500 with 11, 41, 42; 0800 -> 0800 with 11, 41.
No field 7 is sent: a reversal rebuilt from the journal after a restart must name its
sale exactly as the first one did, and the link does not outlive the process; field
90's date and time are zeros, which says the sale sent none.
- 0600 (status inquiry) has no plain 1987 form: not sent (counted); the terminal is run
  without it (`status_inquiry = false`).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import replace

from acquirer import iso87
from acquirer.protocol import (
    MTI_INQUIRY,
    Message,
    ProtocolError,
    canonical_mti,
    field_problem,
    response_mti,
    sign,
)
from harness.mqtt import wire
from harness.mqtt.wire import Codec

from .standard import UNSIGNED, StandardTerminal

log = logging.getLogger("posharness.tcp.standard_host")

# Requests awaiting an answer that the link remembers (the oldest forgotten first).
PENDING_MAX = 4096


class StandardHostLink:
    """Maps one connection's frames between this protocol and plain ISO 8583:1987."""

    def __init__(
        self,
        terminals: dict[str, StandardTerminal],
        mac_keys: dict[str, bytes],
        fmt: iso87.Format = "ascii-hex",
    ) -> None:
        """`terminals`: how each terminal's link is authenticated; `mac_keys`: each
        terminal's own (this protocol's) key, to sign the answers it is given."""
        self.terminals, self.mac_keys, self.fmt = terminals, mac_keys, fmt
        self.stats: Counter[str] = Counter()
        # (terminal, STAN, request MTI) -> (request, codec), oldest first.
        self._pending: OrderedDict[tuple[str, int, str], tuple[Message, Codec]] = OrderedDict()

    def banner(self) -> list[str]:
        return [
            f"terminal {t.tid}: plain ISO 8583:1987 host link, "
            + ("MAC X9.19 in field 64" if t.mac == "x919" else UNSIGNED)
            for t in self.terminals.values()
        ]

    def outgoing(self, payload: bytes) -> bytes | None:
        """The plain frame for this protocol's request `payload`, or None (not sent)."""
        try:
            msg, codec = wire.decode(payload)
        except ProtocolError:
            self.stats["unreadable_request"] += 1
            return None
        terminal = self.terminals.get(msg.terminal_id)
        if terminal is None or msg.mti == MTI_INQUIRY:
            self.stats["not_mapped"] += 1
            return None
        fields = _plain(msg)
        if terminal.mac == "x919":
            fields = iso87.sign(fields, terminal.key)
        key = (msg.terminal_id, msg.stan, canonical_mti(msg.mti)[0])
        self._pending[key] = (msg, codec)
        self._pending.move_to_end(key)
        while len(self._pending) > PENDING_MAX:
            self._pending.popitem(last=False)
        self.stats[f"sent_{fields['t']}"] += 1
        return iso87.encode(fields, self.fmt)

    def incoming(self, frame: bytes) -> bytes | None:
        """This protocol's answer for the plain answer `frame`, or None (dropped)."""
        try:
            _, doc = iso87.decode(frame)
        except iso87.StandardFrameError as exc:
            return self._drop("unreadable", f"an answer that is not ISO 8583:1987: {exc}")
        tid = doc.get("41", "").rstrip(" ")
        terminal = self.terminals.get(tid)
        if terminal is None:
            return self._drop("foreign", f"an answer for terminal {tid!r}, not one of ours")
        if terminal.mac == "x919" and not iso87.verify(doc, terminal.key):
            return self._drop("bad_mac", f"an answer to {tid} without a good MAC in field 64")
        unsigned = f" [{tid}'s link is {UNSIGNED}]" if terminal.mac == "none" else ""
        stan = int(doc["11"]) if doc.get("11", "").isdigit() else -1
        request_mti = doc.get("t", "")[:2] + "00"
        found = self._pending.get((tid, stan, request_mti))
        if found is None:
            why = f"an answer to {tid} matching no request (STAN {stan}){unsigned}"
            return self._drop("unmatched", why)
        request, codec = found
        answer = _answer(request, doc)
        if field_problem(answer) is not None:
            why = f"an answer to {tid} this protocol cannot carry{unsigned}"
            return self._drop("malformed", why)
        self.stats[f"answered_{answer.mti}"] += 1
        return wire.encode(sign(answer, self.mac_keys[tid]), codec)

    def _drop(self, stat: str, why: str) -> bytes | None:
        """Count and log an answer not given to the firmware; None."""
        self.stats[f"dropped_{stat}"] += 1
        log.warning("terminal: dropped %s", why)
        return None


def _plain(msg: Message) -> dict[str, str]:
    """`msg` (a request of this protocol) as plain ISO 8583:1987 fields."""
    mti = msg.mti[:3] + "1" if msg.repeat else msg.mti  # a resend: 0201, 0401, 0421
    out = {
        "t": mti,
        "11": f"{msg.stan:06d}",
        "41": msg.terminal_id.ljust(8),
        "42": msg.merchant_id.ljust(15),
    }
    base = canonical_mti(mti)[0]
    if base in ("0200", "0400", "0420"):
        out |= {
            "2": msg.pan,
            "3": msg.processing_code,
            "4": f"{msg.amount:012d}",
            "49": msg.currency,
        }
    if base in ("0400", "0420"):
        out["90"] = "0200" + f"{msg.orig_stan:06d}" + "0" * 32
    if base == "0800":
        del out["42"]
    return out


def _answer(request: Message, doc: dict[str, str]) -> Message:
    """This protocol's answer to `request` from the plain answer `doc`: what the host
    decided (39, 38, 37) and echoed (2, 3, 4, 49) on the request's own fields."""

    amount = doc.get("4", f"{request.amount:012d}")
    return replace(
        request,
        mti=response_mti(canonical_mti(request.mti)[0]),
        repeat=False,
        pan=doc.get("2", request.pan) if request.pan else request.pan,
        processing_code=doc.get("3", request.processing_code),
        amount=int(amount) if amount.isdigit() else -1,
        currency=doc.get("49", request.currency),
        rrn=doc.get("37", "").strip(" "),
        auth_code=doc.get("38", "").strip(" "),
        rc=doc.get("39", ""),
        mac="",
    )
