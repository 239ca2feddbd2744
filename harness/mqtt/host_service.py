"""The mock acquirer as an MQTT service: the sans-I/O `Acquirer`, unchanged, behind a broker.

`HostCore` is the frame handler (no broker, no clock of its own: tests and the
Hypothesis fuzzer call it directly). `HostService` wires it to a `Session`
subscribed to ``posh/+/req`` with a persistent session (fixed client id, clean
session off), so requests published while the host is down are delivered when
it comes back.

What happens to one frame:

0. Over its terminal's rate (`ratelimit.RateLimiter`, a token bucket per topic
   terminal id: 500 frames/s, bursts of 1,000), or after more than 20 refused frames
   (RC 30 or dropped; refilled at 5/s): dropped unread and unanswered, counted.
1. Longer than FRAME_MAX_BYTES: dropped unread (logged, counted).
2. Not decodable: RC 30 when the sender's MTI and terminal id can still be read
   and match the topic; otherwise dropped.
3. Terminal id differs from the topic's: dropped (the broker's ACLs should
   already stop this; a host never answers on another terminal's topic).
4. Otherwise `Acquirer.begin` / `finish`: unknown terminal or wrong MAC -> RC 30,
   a repeat -> the stored answer (idempotency), a new request -> decided and
   committed in SQLite before the answer is published.

Warnings about dropped and refused frames go through a `ratelimit.LogThrottle`:
one full line per terminal per 10 s and a summary of the rest, so a flood of bad
frames cannot fill the disk with log lines.

Keys live in the host's database, table `terminal_keys` (terminal id -> MAC key),
copied there from a key file at provisioning (harness/mqtt/keys.py): keep the
database file as private as the key file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from acquirer import iso8583
from acquirer.host import Acquirer, HostAction, Ticket
from acquirer.protocol import (
    MTI_PURCHASE,
    RC_FORMAT_ERROR,
    REQUEST_MTIS,
    Message,
    ProtocolError,
    canonical_mti,
)
from acquirer.shared import SharedAcquirer

from . import realclock, wire
from .groupcommit import GroupCommit
from .hostdb import CLAIM_LEASE_MS, open_acquirer
from .ratelimit import (
    BAD_BURST,
    BAD_RATE_PER_S,
    LOG_INTERVAL_MS,
    RATE_PER_S,
    LogThrottle,
    RateLimiter,
)
from .session import Session
from .walsync import WalSync, _LazyClaim
from .wire import BrokerAddress, Codec

log = logging.getLogger("posharness.mqtt.host")

# How often (ms, scaled like the host's other timers) the service moves wallet orders
# that are due: a customer's confirmation shows in the books within this.
WALLET_TICK_MS = 500

# A rate no sender reaches (frames/s): the limiter turned off.
UNLIMITED = 10**12

HOST_CLIENT_ID = "posharness-acquirer"
# Terminals provisioned by default: T0001 .. T0100 (fleets and docs use these ids).
PROVISION_DEFAULT = 100


@dataclass(frozen=True, slots=True)
class Reply:
    """A frame to publish on `posh/<tid>/resp`."""

    tid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Deferred:
    """Accepted work to finish after `delay_ms` (slow test cards and amounts)."""

    ticket: Ticket
    codec: Codec
    delay_ms: int


class HostCore:
    """Frame in, frame (or nothing) out, around one `Acquirer`. Never raises."""

    def __init__(
        self,
        acquirer: Acquirer,
        clock_ms: Callable[[], int] = realclock.wall_ms,
        on_action: Callable[[Message, HostAction], None] | None = None,
        *,
        group_commit: bool = False,
        limiter: RateLimiter | None = None,
        log_throttle: LogThrottle | None = None,
        bad_limiter: RateLimiter | None = None,
    ) -> None:
        """`limiter`: frames per terminal (default `RateLimiter()`); `log_throttle`:
        warnings per terminal (default `LogThrottle()`)."""
        self.acquirer = acquirer
        self.clock_ms = clock_ms
        self.on_action = on_action
        self.stats: Counter[str] = Counter()
        # `is None`, not `or`: an empty limiter has len() 0 and is falsy.
        self.limiter = RateLimiter() if limiter is None else limiter
        self.log_throttle = LogThrottle() if log_throttle is None else log_throttle
        self.bad_limiter = (
            RateLimiter(BAD_RATE_PER_S, BAD_BURST) if bad_limiter is None else bad_limiter
        )
        # Group commit: commits skip their fsync and the caller must `sync()` before
        # publishing any reply (HostService does, for many replies at once).
        self.wal = WalSync.of(acquirer) if group_commit else None
        self._lazy_claim = None if self.wal is not None else _LazyClaim.of(acquirer)

    def admit(self, topic_tid: str) -> bool:
        """Take a frame of `topic_tid`'s within its rate; False (counted, logged through
        the throttle) when it is over and must be dropped unread and unanswered."""
        now_ms = self.clock_ms()
        if not self.bad_limiter.available(topic_tid, now_ms):
            why = f"sent over {self.bad_limiter.rate_per_s} refused frames/s"
        elif self.limiter.allow(topic_tid, now_ms):
            return True
        else:
            why = f"is over {self.limiter.rate_per_s} frames/s"
        self.stats["frames"] += 1
        self.stats["rate_limited"] += 1
        self._warn(
            topic_tid,
            "over the rate limit",
            f"{topic_tid} {why}: dropping its frames unanswered for now",
        )
        return False

    def _refused(self, tid: str) -> None:
        """`tid` sent a frame refused as unauthentic or malformed: spend a bad token."""
        self.bad_limiter.allow(tid, self.clock_ms())

    def handle(
        self, topic_tid: str, payload: bytes, *, admitted: bool = False
    ) -> Reply | Deferred | None:
        """Handle one request frame that arrived on `posh/<topic_tid>/req`.

        `admitted`: the caller already took it through `admit` (and it passed)."""
        if not admitted and not self.admit(topic_tid):
            return None
        try:
            return self._handle(topic_tid, payload)
        except Exception:  # the service keeps serving whatever one frame does
            self.stats["internal_error"] += 1
            log.exception("host: internal error on a frame from %s (dropped)", topic_tid)
            return None

    def finish(self, deferred: Deferred) -> Reply | None:
        """Finish work accepted earlier. Never raises."""
        try:
            resp, action = self.acquirer.finish(deferred.ticket, self.clock_ms())
            return self._answer(deferred.ticket.request, resp, action, deferred.codec)
        except Exception:
            self.stats["internal_error"] += 1
            log.exception("host: internal error finishing a request (dropped)")
            return None

    def wallet_tick(self) -> int:
        """Apply the wallet confirmations and closes that are due (the phones, on a
        real host: nothing else would move an order nobody asks about). Returns how
        many orders changed. Never raises."""
        acquirer = self.acquirer
        due = acquirer.wallet_due_ms
        if due < 0:
            return 0
        now_ms = self.clock_ms()
        if due > now_ms:
            return 0
        try:
            done = acquirer.wallet_advance(now_ms)
        except Exception:
            self.stats["internal_error"] += 1
            log.exception("host: internal error advancing wallet orders")
            return 0
        for txn, action in done:
            self.stats[f"wallet_{action.action}"] += 1
            if self.on_action is not None:
                msg = Message(MTI_PURCHASE, txn.terminal_id, "-", txn.stan, idem_key=txn.idem_key)
                self.on_action(msg, action)
        return len(done)

    def _warn(self, tid: str, reason: str, line: str) -> None:
        """A warning about `tid`'s frames, through the log throttle."""
        for out in self.log_throttle.note(tid, reason, line, self.clock_ms()):
            log.warning("host: %s", out)

    def flush_log(self) -> None:
        """Log the summaries of suppressed warnings whose interval has ended."""
        for out in self.log_throttle.flush(self.clock_ms()):
            log.warning("host: %s", out)

    def _drop(self, topic_tid: str, why: str, reason: str = "dropped") -> None:
        self.stats["dropped"] += 1
        self._refused(topic_tid)
        self._warn(topic_tid, reason, f"dropped a frame on posh/{topic_tid}/req: {why}")

    def _handle(self, topic_tid: str, payload: bytes) -> Reply | Deferred | None:
        self.stats["frames"] += 1
        if len(payload) > wire.FRAME_MAX_BYTES:
            self._drop(topic_tid, f"oversize ({len(payload)} bytes)")
            return None
        try:
            msg, codec = wire.decode(payload)
        except ProtocolError as exc:
            codec = wire.sniff_codec(payload)
            partial = address_of(payload, codec)
            if partial is None or partial.terminal_id != topic_tid:
                self._drop(topic_tid, f"malformed, no usable address: {exc}", "malformed")
                return None
            self.stats["rc30"] += 1
            self._refused(topic_tid)
            self._warn(topic_tid, "RC 30", f"RC 30 to {topic_tid}: {exc}")
            resp = self.acquirer.respond_error(partial, RC_FORMAT_ERROR)
            return self._encode(topic_tid, resp, codec)
        if msg.terminal_id != topic_tid:
            self._drop(topic_tid, f"terminal id {msg.terminal_id!r} does not match the topic")
            return None
        if self._lazy_claim is not None and msg.mti == MTI_PURCHASE:
            result, action = self._lazy_claim.begin(msg, self.clock_ms())
        else:
            result, action = self.acquirer.begin(msg, self.clock_ms())
        if isinstance(result, Ticket):
            delay_ms = result.finish_at_ms - result.started_ms
            if delay_ms > 0:
                return Deferred(result, codec, delay_ms)
            resp, action = self.acquirer.finish(result, self.clock_ms())
            return self._answer(msg, resp, action, codec)
        return self._answer(msg, result, action, codec)

    def _answer(
        self, req: Message, resp: Message, action: HostAction | None, codec: Codec
    ) -> Reply | None:
        if action is not None:
            self.stats[action.action] += 1
            if action.rc == RC_FORMAT_ERROR:
                self.stats["rc30"] += 1
                self._refused(req.terminal_id)
                self._warn(req.terminal_id, "RC 30", f"RC 30 to {req.terminal_id}: {action.detail}")
            if self.on_action is not None:
                self.on_action(req, action)
            if action.action == "charge-no-reply":
                # The catalogue's "time out and reverse" amount: committed, never answered.
                return None
        return self._encode(req.terminal_id, resp, codec)

    def _encode(self, tid: str, resp: Message, codec: Codec) -> Reply | None:
        try:
            payload = wire.encode(resp, codec)
        except ProtocolError as exc:
            self._drop(tid, f"answer not encodable: {exc}")
            return None
        self.stats["replies"] += 1
        return Reply(tid, payload)


def address_of(payload: bytes, codec: Codec) -> Message | None:
    """MTI, terminal, merchant and STAN of a frame, even a malformed one, or None."""
    if codec == "iso8583":
        return iso8583.decode_address(payload)
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    mti, tid = obj.get("mti"), obj.get("terminal_id")
    if isinstance(mti, str):
        mti = canonical_mti(mti)[0]  # a repeat MTI (0201) names its request's
    if mti not in REQUEST_MTIS or not isinstance(tid, str) or not tid.isalnum():
        return None
    mid, stan = obj.get("merchant_id", ""), obj.get("stan", 0)
    return Message(
        mti=mti,
        terminal_id=tid,
        merchant_id=mid if isinstance(mid, str) and mid.isalnum() else "",
        stan=stan if type(stan) is int and 0 <= stan <= 999_999 else 0,
    )


def limiters(rate_limit_per_s: int) -> tuple[RateLimiter | None, RateLimiter | None]:
    """`(limiter, bad_limiter)` for `HostCore` from a frames/s limit (bursts of twice
    that); 0 turns both off (for measuring what they buy: bench/flood.py); None keeps a
    default."""
    if rate_limit_per_s == 0:
        off = RateLimiter(rate_per_s=UNLIMITED, burst=UNLIMITED)
        return off, RateLimiter(rate_per_s=UNLIMITED, burst=UNLIMITED)
    if rate_limit_per_s != RATE_PER_S:
        return RateLimiter(rate_per_s=rate_limit_per_s, burst=2 * rate_limit_per_s), None
    return None, None


class HostService:
    """`HostCore` on a broker. Use as `async with HostService(...) as svc:` or `run()`."""

    def __init__(
        self,
        address: BrokerAddress,
        db_path: str,
        *,
        on_action: Callable[[Message, HostAction], None] | None = None,
        time_scale: float = 1.0,
        client_id: str = HOST_CLIENT_ID,
        rate_limit_per_s: int = RATE_PER_S,
        share: str = "",
    ) -> None:
        """`rate_limit_per_s`: frames per second per terminal (bursts of twice that);
        0 turns the limit off (for measuring what it buys: bench/flood.py). `share`:
        one of several instances on one PostgreSQL database, taking its share of the
        requests through the shared subscription `$share/<share>/posh/+/req`."""
        self.db_path = db_path
        self.time_scale = time_scale
        limiter, bad = limiters(rate_limit_per_s)
        self.core = HostCore(
            open_acquirer(db_path),
            on_action=on_action,
            group_commit=True,
            limiter=limiter,
            bad_limiter=bad,
        )
        self.group = GroupCommit(self.core)
        self._log_timer: asyncio.TimerHandle | None = None
        self._wallet_timer: asyncio.TimerHandle | None = None
        requests = wire.topic("+", "req")
        if share:
            # Each instance its own client, and no persistent session: the broker would
            # keep queueing a dead instance's share for it instead of giving it to
            # the live ones (the terminals resend what was in flight).
            client_id = f"{client_id}-{share}-{os.getpid()}"
            requests = f"$share/{share}/{requests}"
        self.share = share
        self.session = Session(
            address,
            client_id=client_id,
            subscriptions=[requests],
            on_message=self._on_message,
            persistent=not share,
        )

    def _on_message(self, name: str, payload: bytes) -> None:
        parts = wire.split_topic(name)
        if parts is None or parts[1] != "req":
            return
        # The rate limit first: a frame over it costs no transaction, decode or MAC.
        if not self.core.admit(parts[0]):
            return
        self.group.open()
        out = self.core.handle(parts[0], payload, admitted=True)
        if isinstance(out, Deferred):
            asyncio.get_running_loop().call_later(
                out.delay_ms / 1000 * self.time_scale, self._finish, out
            )
        elif out is not None:
            self._reply(out)

    def _finish(self, deferred: Deferred) -> None:
        self.group.open()
        out = self.core.finish(deferred)
        if out is not None:
            self._reply(out)

    # Group commit (groupcommit.py): the requests of one event-loop iteration share
    # one transaction and one WAL fsync; their replies leave after both.

    def _reply(self, out: Reply) -> None:
        topic = wire.topic(out.tid, "resp")
        self.group.send(lambda: self.session.publish(topic, out.payload))

    @property
    def syncs(self) -> int:
        return self.group.syncs

    @property
    def sync_failed(self) -> bool:
        return self.group.failed

    async def start(self) -> None:
        """Start serving; returns once subscribed."""
        await self.session.start()
        self._schedule_log_flush()

    def _schedule_log_flush(self) -> None:
        """Every LOG_INTERVAL_MS: log the summaries of suppressed warnings. Every
        WALLET_TICK_MS: move the wallet orders that are due (`HostCore.wallet_tick`)."""

        def tick() -> None:
            self.core.flush_log()
            self._log_timer = loop.call_later(LOG_INTERVAL_MS / 1000, tick)

        def wallet() -> None:
            if isinstance(acquirer, SharedAcquirer):
                try:
                    # Claims of an instance that died (see hostdb.clear_in_progress).
                    acquirer.clear_stale_claims(self.core.clock_ms() - CLAIM_LEASE_MS)
                    acquirer.refresh_wallet_due()  # other instances take orders too
                except Exception:  # the timer keeps running whatever the database does
                    log.exception("host: internal error clearing stale claims")
            if 0 <= self.core.acquirer.wallet_due_ms <= self.core.clock_ms():
                self.group.open()
                self.core.wallet_tick()
            self._wallet_timer = loop.call_later(WALLET_TICK_MS / 1000 * self.time_scale, wallet)

        loop = asyncio.get_running_loop()
        acquirer = self.core.acquirer
        self._log_timer = loop.call_later(LOG_INTERVAL_MS / 1000, tick)
        self._wallet_timer = loop.call_later(WALLET_TICK_MS / 1000 * self.time_scale, wallet)

    async def stop(self) -> None:
        """Finish the open group (commit, fsync, answer), disconnect, close the database."""
        self.group.flush()
        if self._wallet_timer is not None:
            self._wallet_timer.cancel()
        if self._log_timer is not None:
            self._log_timer.cancel()
            self.core.flush_log()
        await self.session.stop()
        self.core.acquirer.close()

    async def __aenter__(self) -> HostService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Serve until cancelled."""
        self._schedule_log_flush()
        try:
            await self.session.run()
        finally:
            self.group.flush()
            self.core.acquirer.close()
