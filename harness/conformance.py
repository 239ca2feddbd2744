"""`posharness conformance`: a battery of protocol cases against any host endpoint.

Like h2spec or the Autobahn test suite do for HTTP/2 and WebSocket, it plays one terminal
against a host over MQTT and checks every answer against docs/protocol.md: idempotent
resends (both forms), a key reused with another body, concurrent duplicates, reversals
(of a sale, again, with the wrong amount, of an unknown sale), a batch that does not
match and the next one that does, malformed and forged frames, a stale transmission time,
STAN 0. Each case prints PASS or FAIL; a failure shows the exchange that failed. Exit 0
when every case passes, 1 when one fails, 2 on a usage error.

    posharness conformance (--broker mqtt://HOST:PORT | --host tcp://HOST:PORT [--header 2b])
                           --keys FILE --terminal T0001
                           [--codec iso8583|json] [--pan PAN] [--timeout S]

The terminal must be provisioned on the host (its MAC key in the key file; its broker
password too when the broker wants one) and should be used by nothing else while the
suite runs: its batches are closed. Amounts and keys are fresh on every run, so the
suite can be run again against the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt

from acquirer import protocol as p
from acquirer.catalogue import PAN_APPROVE
from harness.mqtt import realclock, wire

# Seconds to wait for an answer that must come; for a frame that may go unanswered,
# how long silence counts as "no answer" (a late answer could only turn FAIL to PASS).
ANSWER_TIMEOUT_S = 10.0
SILENCE_S = 0.5


class ConformanceError(Exception):
    """A case's check failed: the message says what was expected and what came."""


@dataclass
class Probe:
    """One terminal's side of the conversation: send a frame, read its answers."""

    transmit: Callable[[bytes], Awaitable[None]]  # one request frame to the host
    tid: str
    key: bytes
    codec: wire.Codec
    pan: str
    timeout_s: float
    answers: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    log: list[str] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    stan: int = field(default_factory=lambda: secrets.randbelow(900_000) + 1)
    keys_made: int = 0

    def next_stan(self) -> int:
        self.stan = self.stan % p.STAN_MAX + 1
        return self.stan

    def new_key(self) -> str:
        self.keys_made += 1
        return f"{self.tid}-conf-{self.nonce}-{self.keys_made}"

    def request(self, mti: str, **fields: Any) -> p.Message:
        """A signed, freshly stamped request from this terminal."""
        msg = p.Message(mti, self.tid, "M000000000001", fields.pop("stan", 0) or self.next_stan())
        msg = replace(msg, **fields)
        return p.stamp(p.sign(msg, self.key), self.key, realclock.wall_ms())

    async def send_raw(self, frame: bytes) -> None:
        while not self.answers.empty():
            self.answers.get_nowait()
        self.log.append(f"-> {frame[:300]!r}")
        await self.transmit(frame)

    async def read(self, timeout_s: float) -> p.Message | None:
        """The next answer on our topic, decoded (None after `timeout_s` of silence)."""
        try:
            frame = await asyncio.wait_for(self.answers.get(), timeout_s)
        except TimeoutError:
            self.log.append("<- (nothing)")
            return None
        self.log.append(f"<- {frame[:300]!r}")
        try:
            return wire.decode(frame)[0]
        except p.ProtocolError as exc:
            raise ConformanceError(f"the answer does not decode: {exc}") from None

    async def ask(self, msg: p.Message) -> p.Message:
        """Send `msg`; its answer, which must come, be signed and echo the request."""
        await self.send_raw(wire.encode(msg, self.codec))
        answer = await self.read(self.timeout_s)
        if answer is None:
            raise ConformanceError(f"no answer within {self.timeout_s} s")
        self.check_answer(msg, answer)
        return answer

    def check_answer(self, req: p.Message, ans: p.Message) -> None:
        if not p.verify(ans, self.key):
            raise ConformanceError(f"answer not signed with the terminal's key (rc {ans.rc})")
        want = p.response_mti(req.mti)
        echoed = ("stan", "idem_key", "orig_key", "amount", "pan", "batch_no")
        for name in echoed:
            if getattr(ans, name) != getattr(req, name):
                raise ConformanceError(f"answer does not echo the request's {name}")
        if ans.mti != want:
            raise ConformanceError(f"answer MTI {ans.mti}, expected {want}")


def expect_rc(ans: p.Message, *rcs: str) -> None:
    if ans.rc not in rcs:
        raise ConformanceError(f"rc {ans.rc}, expected {' or '.join(rcs)}")


def purchase(t: Probe, amount: int, key: str = "", **kw: Any) -> p.Message:
    return t.request(p.MTI_PURCHASE, pan=t.pan, amount=amount, idem_key=key or t.new_key(), **kw)


def fresh_amount() -> int:
    """An amount no test card catalogue gives a special meaning (1.01-9.99 in odd cents)."""
    return 101 + 2 * secrets.randbelow(440)


async def case_echo(t: Probe) -> None:
    expect_rc(await t.ask(t.request(p.MTI_ECHO)), p.RC_APPROVED)


async def case_purchase_resent(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    first = await t.ask(sale)
    expect_rc(first, p.RC_APPROVED)
    again = await t.ask(p.stamp(p.sign(replace(sale, repeat=True), t.key), t.key, sale.sent_ms))
    expect_rc(again, p.RC_APPROVED)
    if (again.rrn, again.auth_code) != (first.rrn, first.auth_code):
        raise ConformanceError(f"resend got RRN {again.rrn}, first send {first.rrn}")


async def case_resent_as_repeat_mti(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    first = await t.ask(sale)
    expect_rc(first, p.RC_APPROVED)
    resend = p.sign(replace(sale, repeat=True, mac=""), t.key)
    frame = wire.encode(replace(resend, repeat=False), t.codec)
    if t.codec == "json":
        frame = frame.replace(b'"mti":"0200"', b'"mti":"0201"', 1)
    else:
        frame = b"0201" + frame[4:]
    await t.send_raw(frame)
    again = await t.read(t.timeout_s)
    if again is None:
        raise ConformanceError("no answer to a 0201 resend")
    t.check_answer(resend, again)
    if again.rrn != first.rrn:
        raise ConformanceError(f"0201 resend got RRN {again.rrn}, first send {first.rrn}")


async def case_key_reused_with_other_body(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    expect_rc(await t.ask(sale), p.RC_APPROVED)
    other = purchase(t, sale.amount + 100, key=sale.idem_key, stan=sale.stan)
    expect_rc(await t.ask(other), p.RC_DUPLICATE)


async def case_concurrent_duplicates(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    frame = wire.encode(sale, t.codec)
    await t.send_raw(frame)
    await t.transmit(frame)
    answers = [await t.read(t.timeout_s), await t.read(t.timeout_s)]
    rrns = set()
    for ans in answers:
        if ans is None:
            raise ConformanceError("a duplicate went unanswered")
        t.check_answer(sale, ans)
        expect_rc(ans, p.RC_APPROVED, p.RC_IN_PROGRESS)
        if ans.rc == p.RC_APPROVED:
            rrns.add(ans.rrn)
    final = await t.ask(p.stamp(p.sign(replace(sale, repeat=True), t.key), t.key, sale.sent_ms))
    expect_rc(final, p.RC_APPROVED)
    rrns.add(final.rrn)
    if len(rrns) != 1:
        raise ConformanceError(f"one sale, several RRNs: {sorted(rrns)}")


async def case_reversal_then_again(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    expect_rc(await t.ask(sale), p.RC_APPROVED)
    rev = t.request(
        p.MTI_REVERSAL, orig_key=sale.idem_key, orig_stan=sale.stan, amount=sale.amount, pan=t.pan
    )
    expect_rc(await t.ask(rev), p.RC_APPROVED)
    again = t.request(
        p.MTI_REVERSAL, orig_key=sale.idem_key, orig_stan=sale.stan, amount=sale.amount, pan=t.pan
    )
    expect_rc(await t.ask(again), p.RC_APPROVED)


async def case_reversal_wrong_amount(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    expect_rc(await t.ask(sale), p.RC_APPROVED)
    rev = t.request(
        p.MTI_REVERSAL, orig_key=sale.idem_key, orig_stan=sale.stan, amount=sale.amount + 1
    )
    expect_rc(await t.ask(rev), p.RC_REVERSAL_REFUSED)


async def case_reversal_of_unknown(t: Probe) -> None:
    rev = t.request(p.MTI_REVERSAL, orig_key=t.new_key(), orig_stan=1, amount=fresh_amount())
    expect_rc(await t.ask(rev), p.RC_UNABLE_TO_LOCATE)


async def case_batch_mismatch_then_match(t: Probe) -> None:
    first_no = 1 + secrets.randbelow(10**9)
    # Close whatever is open (totals unknown here: 00 or 95 both do).
    expect_rc(await t.ask(t.request(p.MTI_BATCH, batch_no=first_no)), "00", "95")
    sale = purchase(t, fresh_amount())
    expect_rc(await t.ask(sale), p.RC_APPROVED)
    wrong = t.request(
        p.MTI_BATCH, batch_no=first_no + 1, debit_count=1, debit_amount=sale.amount + 1
    )
    answer = await t.ask(wrong)
    expect_rc(answer, p.RC_RECONCILE_ERROR)
    again = await t.ask(
        t.request(p.MTI_BATCH, batch_no=first_no + 1, debit_count=1, debit_amount=sale.amount)
    )
    expect_rc(again, p.RC_RECONCILE_ERROR)  # a batch number closes once
    sale2 = purchase(t, fresh_amount())
    expect_rc(await t.ask(sale2), p.RC_APPROVED)
    right = t.request(p.MTI_BATCH, batch_no=first_no + 2, debit_count=1, debit_amount=sale2.amount)
    expect_rc(await t.ask(right), p.RC_APPROVED)


async def _never_signed(t: Probe, frame: bytes) -> None:
    """`frame` must get no answer, or an unsigned RC 30: never a signed one."""
    await t.send_raw(frame)
    ans = await t.read(SILENCE_S)
    if ans is not None and (ans.mac or ans.rc != p.RC_FORMAT_ERROR):
        raise ConformanceError(f"answered rc {ans.rc} {'signed' if ans.mac else 'unsigned'}")


async def case_malformed_frame(t: Probe) -> None:
    frame = wire.encode(purchase(t, fresh_amount()), t.codec)
    broken = frame.replace(b"0000", b"00X0", 1) if t.codec == "iso8583" else frame[:-2]
    await _never_signed(t, broken)


async def case_forged_mac(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    await _never_signed(t, wire.encode(replace(sale, amount=sale.amount * 100), t.codec))


async def case_stale_time(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    old = p.sign(replace(sale, sent_ms=sale.sent_ms - 3_600_000, mac=""), t.key)
    expect_rc(await t.ask(old), p.RC_STALE)


async def case_stan_zero(t: Probe) -> None:
    sale = purchase(t, fresh_amount())
    zero = p.sign(replace(sale, stan=0, mac=""), t.key)
    await t.send_raw(wire.encode(zero, t.codec))
    ans = await t.read(t.timeout_s)
    if ans is None or ans.rc != p.RC_FORMAT_ERROR:
        raise ConformanceError(f"STAN 0 answered {ans.rc if ans else 'nothing'}, expected 30")


CASES: tuple[tuple[str, str, Callable[[Probe], Awaitable[None]]], ...] = (
    ("echo", "0800 answered 00, signed", case_echo),
    ("resend", "a resend gets the stored outcome (same RRN)", case_purchase_resent),
    ("resend-0201", "a resend as a repeat MTI gets the same RRN", case_resent_as_repeat_mti),
    ("key-reuse", "a key reused with another amount gets 94", case_key_reused_with_other_body),
    ("duplicates", "two copies at once: one sale, one RRN", case_concurrent_duplicates),
    ("reversal", "a reversal and its repeat both 00", case_reversal_then_again),
    ("reversal-mismatch", "a reversal with another amount gets 12", case_reversal_wrong_amount),
    ("reversal-unknown", "a reversal of an unknown sale gets 25", case_reversal_of_unknown),
    ("batch", "95 on wrong totals, closes once, 00 next", case_batch_mismatch_then_match),
    ("malformed", "a malformed frame gets no signed answer", case_malformed_frame),
    ("forged", "a frame with a forged MAC gets no signed answer", case_forged_mac),
    ("stale", "a transmission time an hour old gets 63", case_stale_time),
    ("stan-zero", "STAN 0 gets 30", case_stan_zero),
)


@dataclass(frozen=True)
class CaseResult:
    name: str
    about: str
    ok: bool
    detail: str = ""
    exchange: tuple[str, ...] = ()


async def run_cases(
    address: wire.BrokerAddress | TcpTarget,
    tid: str,
    key: bytes,
    codec: wire.Codec = "iso8583",
    pan: str = PAN_APPROVE,
    timeout_s: float = ANSWER_TIMEOUT_S,
    only: tuple[str, ...] = (),
) -> list[CaseResult]:
    """Run the cases (all, or those named in `only`) in order against the host at
    `address` (a broker, or a TCP listener); one result each."""
    if isinstance(address, TcpTarget):
        return await _run_tcp(address, tid, key, codec, pan, timeout_s, only)
    async with aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=tid,
    ) as client:
        await client.subscribe(wire.topic(tid, "resp"), qos=1)

        async def transmit(frame: bytes) -> None:
            await client.publish(wire.topic(tid, "req"), frame, qos=1)

        probe = Probe(transmit, tid, key, codec, pan, timeout_s)

        async def pump() -> None:
            async for message in client.messages:
                if isinstance(message.payload, bytes):
                    probe.answers.put_nowait(message.payload)

        return await _with_reader(probe, pump(), only)


@dataclass(frozen=True)
class TcpTarget:
    """A host listening on TCP (`acquirer serve --listen`), with its length header."""

    host: str
    port: int
    header: str = "2b"


async def _run_tcp(
    target: TcpTarget, tid: str, key: bytes, codec: wire.Codec, pan: str,
    timeout_s: float, only: tuple[str, ...],
) -> list[CaseResult]:  # fmt: skip
    from harness.tcp.framing import FrameReader, encode_frame

    reader, writer = await asyncio.open_connection(target.host, target.port)

    async def transmit(frame: bytes) -> None:
        writer.write(encode_frame(frame, target.header))
        await writer.drain()

    probe = Probe(transmit, tid, key, codec, pan, timeout_s)

    async def pump() -> None:
        framer = FrameReader(target.header)
        while data := await reader.read(65536):
            for _, message in framer.feed(data):
                probe.answers.put_nowait(message)

    try:
        return await _with_reader(probe, pump(), only)
    finally:
        writer.close()
        await writer.wait_closed()


async def _with_reader(
    probe: Probe, pump: Coroutine[Any, Any, None], only: tuple[str, ...]
) -> list[CaseResult]:
    """Run the cases while `pump` feeds the host's answers into `probe.answers`."""
    results = []
    reader = asyncio.create_task(pump)
    try:
        for name, about, case in CASES:
            if only and name not in only:
                continue
            probe.log = []
            try:
                await case(probe)
                results.append(CaseResult(name, about, True))
            except ConformanceError as exc:
                results.append(CaseResult(name, about, False, str(exc), tuple(probe.log)))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return results


def register(sub: Any) -> None:
    """Add `conformance` to the top-level parser's subparsers."""
    c = sub.add_parser("conformance", help="run the protocol conformance cases against a host")
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--broker", help="mqtt://[user:pass@]host:port or env:NAME")
    where.add_argument("--host", metavar="tcp://HOST:PORT", help="a host listening on TCP")
    c.add_argument(
        "--header", choices=("2b", "4b", "2a", "4a"), default="2b", help="with --host (2b)"
    )
    c.add_argument("--keys", required=True, metavar="FILE", help="key file with the terminal")
    c.add_argument("--terminal", default="T0001", help="terminal id to play (default T0001)")
    c.add_argument("--codec", choices=("iso8583", "json"), default="iso8583")
    c.add_argument("--pan", default=PAN_APPROVE, help="a card the host approves")
    c.add_argument("--timeout", type=float, default=ANSWER_TIMEOUT_S, metavar="S")
    c.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    c.set_defaults(func=cmd_conformance)


def cmd_conformance(args: argparse.Namespace) -> int:
    from harness.mqtt.keys import KeyFileError, load_key_file

    names = {name for name, _, _ in CASES}
    unknown = [c for c in args.case if c not in names]
    if unknown:
        print(
            f"posharness: unknown case {unknown[0]!r} (cases: {', '.join(names)})", file=sys.stderr
        )
        return 2
    from harness.tcp.server import parse_listen

    address: wire.BrokerAddress | TcpTarget
    try:
        if args.host is not None:
            address = TcpTarget(*parse_listen(args.host), args.header)
        else:
            address = wire.BrokerAddress.parse(args.broker)
        secret = load_key_file(args.keys).get(args.terminal)
    except (ValueError, KeyFileError, OSError) as exc:
        print(f"posharness: {exc}", file=sys.stderr)
        return 2
    if secret is None:
        print(f"posharness: {args.keys}: no entry for terminal {args.terminal}", file=sys.stderr)
        return 2
    if (
        isinstance(address, wire.BrokerAddress)
        and address.username is None
        and secret.broker_password
    ):
        address = address.with_login(args.terminal, secret.broker_password)
    try:
        results = asyncio.run(
            run_cases(
                address, args.terminal, secret.mac_key, args.codec, args.pan, args.timeout,
                tuple(args.case),
            )
        )  # fmt: skip
    except (aiomqtt.MqttError, OSError) as exc:
        print(f"posharness: cannot reach the host: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.name:<18} {r.about}")
        if not r.ok:
            print(f"      {r.detail}")
            for line in r.exchange:
                print(f"      {line}")
    failed = sum(1 for r in results if not r.ok)
    print(f"{len(results)} cases: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
