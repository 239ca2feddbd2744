"""Standard terminals: plain ISO 8583:1987 peers (outside tools, other vendors' POS) on
the TCP host, mapped onto this protocol's host core.

`acquirer serve --listen tcp://... --standard-terminals FILE` names the terminals
that speak plain 1987 messages (acquirer/iso87.py) instead of this protocol's. A
frame whose field 41 names one of them goes through `StandardGateway`: its MAC
checked the way the file says (`x919`: ISO 9797-1 algorithm 3; `none`: MAC-less,
said so in every log line and counted), its fields mapped onto a `Message`, which
the gateway signs with a key of its own that only it and the host know, and which
then takes exactly the path of any other request (rate limit, idempotency, ledger,
durability). The host's answer is mapped back and, for an `x919` terminal, signed.

The mapping (docs/tcp.md, "Standard terminals"):
- 0100 and 0200 (and their repeats 0101, 0201) are sales: this mock acquirer is
  single-message, so an authorisation is booked as a sale at once (there is no
  separate completion). 0400 and 0420 (repeats 0401, 0421) reverse the sale their
  field 90 names. 0800 is an echo. Anything else is answered RC 12.
- Idempotency: plain 1987 has no idempotency key; the classic duplicate rule
  stands in for it: the key is the terminal's field 7 (transmission date and time,
  or none) and STAN. A resend with the same STAN and date gets the stored answer,
  never a second charge; a tool that restarts its STANs within the host's
  idempotency window without sending field 7 gets its earlier answers back (RC 94
  if the amount differs). A reversal names its sale by field 90's STAN and date and
  time (zeros: the sale sent no field 7).
- Freshness: the host's transmission-time check is this gateway's own clock (the
  1987 field 7 is not covered by the protocol's MAC and has no year).

Config file (JSON, mode 0600: it holds keys)::

    {"TERM0001": {"mac": "none"},
     "POS00001": {"mac": "x919", "key": "<32 hex digits>"}}
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from acquirer import iso87
from acquirer.protocol import (
    MTI_ECHO,
    MTI_PURCHASE,
    MTI_REVERSAL,
    MTI_REVERSAL_ADVICE,
    PROC_PURCHASE,
    PROC_PURCHASE_PARTIAL,
    PROC_REFUND,
    RC_FORMAT_ERROR,
    RC_PARTIAL,
    RC_REVERSAL_REFUSED,
    Message,
    ProtocolError,
    field_problem,
    sign,
)
from harness.mqtt import wire
from harness.mqtt.keys import KeyFileError, read_secret_json
from harness.mqtt.ratelimit import LogThrottle

log = logging.getLogger("posharness.tcp.standard")

RC_INVALID_TRANSACTION = RC_REVERSAL_REFUSED  # "12": what a standard terminal may not ask

MacScheme = Literal["none", "x919"]
MAC_SCHEMES: tuple[MacScheme, ...] = ("none", "x919")
STANDARD_TERMINALS_MAX = 10_000
_SALE_MTIS = {"0100": False, "0101": True, "0200": False, "0201": True}
# Reversal MTIs: this protocol's MTI and whether it is a resend.
_REVERSAL_MTIS = {
    "0400": (MTI_REVERSAL, False),
    "0401": (MTI_REVERSAL, True),
    "0420": (MTI_REVERSAL_ADVICE, False),
    "0421": (MTI_REVERSAL_ADVICE, True),
}
_PROCESSING_CODES = frozenset({PROC_PURCHASE, PROC_PURCHASE_PARTIAL, PROC_REFUND})
UNSIGNED = "UNSIGNED (MAC-less: anyone who reaches the port can act as it)"


@dataclass(frozen=True, slots=True)
class StandardTerminal:
    tid: str
    mac: MacScheme
    key: bytes = b""  # the X9.19 key (16 bytes) of an x919 terminal

    def __repr__(self) -> str:  # never print a key by accident
        return f"StandardTerminal({self.tid!r}, {self.mac!r})"


def load_standard_terminals(path: str | Path) -> dict[str, StandardTerminal]:
    """The terminals in config file `path`; KeyFileError (one line) if unusable."""
    obj = read_secret_json(path, "terminal id -> {mac, key}")
    if len(obj) > STANDARD_TERMINALS_MAX:
        raise KeyFileError(f"{path}: more than {STANDARD_TERMINALS_MAX} terminals")
    out: dict[str, StandardTerminal] = {}
    for tid, entry in obj.items():
        where = f"{path}: {tid[:20]!r}"
        if not (1 <= len(tid) <= 8 and tid.isascii() and tid.isalnum()):
            raise KeyFileError(f"{where} is not a terminal id (1-8 letters or digits)")
        if not isinstance(entry, dict) or sorted(entry) not in (["mac"], ["key", "mac"]):
            raise KeyFileError(f'{where}: expected {{"mac": "none"}} or {{"mac": "x919", "key"}}')
        mac = entry["mac"]
        if mac not in MAC_SCHEMES:
            raise KeyFileError(f"{where}: mac must be one of {', '.join(MAC_SCHEMES)}")
        if mac == "none":
            if "key" in entry:
                raise KeyFileError(f'{where}: a terminal with "mac": "none" has no key')
            out[tid] = StandardTerminal(tid, "none")
            continue
        key = entry.get("key")
        try:
            raw = bytes.fromhex(key) if isinstance(key, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != iso87.X919_KEY_BYTES:
            raise KeyFileError(f"{where}: an x919 key is 32 hex digits (16 bytes)")
        out[tid] = StandardTerminal(tid, "x919", raw)
    return out


@dataclass(frozen=True, slots=True)
class Routed:
    """A standard terminal's frame: what to give the host core (`payload`), or the
    answer to write at once (`answer`, nothing for the host)."""

    terminal: StandardTerminal
    fmt: iso87.Format
    request: dict[str, str]
    payload: bytes = b""
    answer: bytes = b""


class StandardGateway:
    """Maps standard terminals' frames onto the host core and back. Sans-I/O."""

    def __init__(self, terminals: Mapping[str, StandardTerminal]) -> None:
        self.terminals = dict(terminals)
        # The protocol keys the gateway signs with on the terminals' behalf: fresh
        # each start, known only to this process and its host (provisioned by the caller).
        self.protocol_keys = {t: secrets.token_bytes(32) for t in sorted(self.terminals)}
        self.stats: Counter[str] = Counter()
        self.throttle = LogThrottle()

    def banner(self) -> list[str]:
        """One line per terminal, for the start-up log."""
        return [
            f"standard terminal {t.tid}: ISO 8583:1987, "
            + ("MAC X9.19 (ISO 9797-1 algorithm 3) in field 64" if t.mac == "x919" else UNSIGNED)
            for t in self.terminals.values()
        ]

    def route(self, frame: bytes, now_ms: int) -> Routed | None:
        """The routing of `frame` if a standard terminal sent it, else None (it is
        this protocol's, or nobody's)."""
        if not self.terminals or frame[:1] == b"{":
            return None
        try:
            fmt, doc = iso87.decode(frame)
        except iso87.StandardFrameError:
            return None
        terminal = self.terminals.get(doc.get("41", "").rstrip(" "))
        if terminal is None:
            return None
        self.stats["standard_frames"] += 1
        if terminal.mac == "none":
            self.stats["unsigned_frames"] += 1
        elif not iso87.verify(doc, terminal.key):
            why = "no MAC in field 64" if "64" not in doc else "bad MAC in field 64"
            return self._refuse(terminal, fmt, doc, RC_FORMAT_ERROR, why, now_ms)
        msg, rc, why = self._message(terminal, doc, now_ms)
        if msg is None:
            return self._refuse(terminal, fmt, doc, rc, why, now_ms)
        signed = sign(msg, self.protocol_keys[terminal.tid])
        return Routed(terminal, fmt, doc, payload=wire.encode(signed, "iso8583"))

    def answer(self, routed: Routed, reply: bytes) -> bytes:
        """The host core's `reply` to `routed`, as the terminal's answer frame."""
        try:
            resp = wire.decode(reply)[0]
        except ProtocolError:  # the core only writes what it can read
            return b""
        fields = iso87.answer_fields(routed.request, resp.rc, resp.rrn, resp.auth_code)
        if resp.rc == RC_PARTIAL:
            fields["4"] = f"{resp.amount:012d}"  # the amount approved
        return self._frame(routed.terminal, routed.fmt, fields)

    def _message(
        self, terminal: StandardTerminal, doc: Mapping[str, str], now_ms: int
    ) -> tuple[Message | None, str, str]:
        """The request `doc` as this protocol's Message, or (None, rc, why)."""
        mti = doc.get("t", "")
        merchant, stan = _merchant(doc, terminal), _stan(doc)
        if mti == "0800":
            msg = Message(MTI_ECHO, terminal.tid, merchant, stan, sent_ms=now_ms)
        elif mti not in _SALE_MTIS and mti not in _REVERSAL_MTIS:
            why = f"MTI {mti} is not taken from standard terminals (01x0, 02x0, 04x0, 0800)"
            return None, RC_INVALID_TRANSACTION, why
        elif doc.get("3", "") not in _PROCESSING_CODES:
            why = f"processing code {doc.get('3', '')!r} is not taken (000000, 000001, 200000)"
            return None, RC_INVALID_TRANSACTION, why
        elif not doc.get("4", "").isdigit():
            return None, RC_FORMAT_ERROR, "field 4 (amount) must be digits"
        elif mti in _REVERSAL_MTIS:
            original = _original(doc.get("90", ""))
            if original is None:
                return None, RC_FORMAT_ERROR, "a reversal needs field 90 (42 digits, a 0100/0200)"
            msg = replace(
                self._sale(terminal, doc, "0200", now_ms),
                mti=_REVERSAL_MTIS[mti][0],
                idem_key="",
                repeat=_REVERSAL_MTIS[mti][1],
                orig_stan=original[0],
                orig_key=original[1],
            )
        else:
            msg = self._sale(terminal, doc, mti, now_ms)
        problem = field_problem(msg)
        if problem is not None:
            return None, RC_FORMAT_ERROR, problem
        return msg, "", ""

    @staticmethod
    def _sale(terminal: StandardTerminal, doc: Mapping[str, str], mti: str, now_ms: int) -> Message:
        return Message(
            MTI_PURCHASE,
            terminal.tid,
            _merchant(doc, terminal),
            _stan(doc),
            pan=doc.get("2", ""),
            processing_code=doc["3"],
            amount=int(doc["4"]),
            currency=doc.get("49", ""),
            idem_key=sale_key(doc.get("7", ""), doc.get("11", "")),
            repeat=_SALE_MTIS[mti],
            sent_ms=now_ms,
        )

    def _refuse(
        self,
        terminal: StandardTerminal,
        fmt: iso87.Format,
        doc: dict[str, str],
        rc: str,
        why: str,
        now_ms: int,
    ) -> Routed:
        """Answer `doc` with `rc` at once, unsigned (nothing an unauthenticated peer
        chose is ever signed), nothing stored."""
        self.stats[f"standard_rc{rc}"] += 1
        line = f"RC {rc} to standard terminal {terminal.tid}: {why}"
        if terminal.mac == "none":
            line += f" [{terminal.tid} is {UNSIGNED}]"
        for out in self.throttle.note(terminal.tid, f"RC {rc}", line, now_ms):
            log.warning("host: %s", out)
        fields = iso87.answer_fields(doc, rc)
        try:
            answer = iso87.encode(fields, fmt)
        except iso87.StandardFrameError:
            answer = b""
        return Routed(terminal, fmt, doc, answer=answer)

    def _frame(
        self, terminal: StandardTerminal, fmt: iso87.Format, fields: dict[str, str]
    ) -> bytes:
        if terminal.mac == "x919":
            fields = iso87.sign(fields, terminal.key)
        try:
            return iso87.encode(fields, fmt)
        except iso87.StandardFrameError:
            self.stats["standard_unencodable"] += 1
            return b""


def sale_key(when: str, stan: str) -> str:
    """The idempotency key of a standard terminal's sale: its field 7 (transmission date
    and time, "-" when absent) and STAN, the classic duplicate rule."""
    return f"iso87:{when or '-'}:{stan}"


def _original(field_90: str) -> tuple[int, str] | None:
    """(STAN, key) of the sale a reversal's field 90 names (original MTI, STAN, date and
    time, two institution codes: 42 digits), or None."""
    if len(field_90) != 42 or not field_90.isdigit() or field_90[:2] not in ("01", "02"):
        return None
    stan, when = field_90[4:10], field_90[10:20]
    return int(stan), sale_key("" if when == "0" * 10 else when, stan)


def _merchant(doc: Mapping[str, str], terminal: StandardTerminal) -> str:
    """Field 42 unpadded, or the terminal id when the tool sends none."""
    return doc.get("42", "").strip(" ") or terminal.tid


def _stan(doc: Mapping[str, str]) -> int:
    text = doc.get("11", "")
    return int(text) if text.isascii() and text.isdigit() else -1
