"""A firmware in real time: timers on the event loop, the journal in SQLite, a simulated printer.

The firmware is the same sans-I/O object the simulator drives (`handle(event)
-> effects`); this driver carries its effects out for real:

* `Send`          encode (ISO 8583 or JSON) and publish with QoS 1;
* `SetTimer` / `CancelTimer`   `loop.call_later`, scaled by `time_scale`;
* `JournalAppend` / `JournalTrim`   submitted to the journal file's group
  commit (harness.mqtt.journal); the effects after it wait until it is on disk
  (the crash boundary), while other terminals carry on;
* `Print`         a simulated printer that finishes after `print_ms`;
* `Display`       recorded and logged; final outcomes resolve the purchase;
* `ChipComplete`  the card in the reader answers at once (`ChipResult`): as
  `chip_cards` says for its PAN ("declined", "removed"), else it accepts.

Inbound frames that do not decode are dropped here; everything that decodes
goes to the firmware, which checks the MAC itself (a forged or tampered "approved"
never reaches the printer because the reference firmware refuses it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from acquirer.protocol import (
    MTI_PREAUTH,
    MTI_PURCHASE,
    MTI_REVERSAL,
    Message,
    ProtocolError,
    stamp,
)
from terminal.firmware import (
    FINAL_OUTCOMES,
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelTimer,
    CardPresented,
    ChipComplete,
    ChipResult,
    CodeScanned,
    ConfirmPressed,
    Display,
    Effect,
    Event,
    Firmware,
    FirmwareConfig,
    JournalAppend,
    JournalTrim,
    MessageReceived,
    Outcome,
    PreauthKeyed,
    Print,
    PrintFinished,
    PrintStatus,
    Receipt,
    Send,
    SetTimer,
    TimerExpired,
)

from . import realclock, wire
from .journal import Journal
from .session import Session
from .wire import BrokerAddress, Codec

log = logging.getLogger("posharness.mqtt.terminal")

# How long the simulated printer takes per receipt (real milliseconds, before scaling).
PRINT_MS_DEFAULT = 5
# Most displays kept in memory per terminal (a long run must not grow without bound).
DISPLAYS_KEPT_MAX = 10_000


@dataclass(slots=True)
class Intent:
    """One purchase the harness asked for, and what the terminal finally showed."""

    n: int
    amount: int
    pan: str
    started_ms: float
    outcome: str = ""
    text: str = ""
    finished_ms: float = -1.0
    # The idempotency key of the sale this purchase started ("" until it is sent).
    key: str = ""
    rrn: str = ""  # the host reference its final display named ("" if none)

    @property
    def latency_ms(self) -> float:
        return self.finished_ms - self.started_ms


# Called with the finished purchase, or None if the terminal stopped first.
OnFinished = Callable[[Intent | None], None]


@dataclass(slots=True)
class WireCounts:
    """What this terminal put on the wire (observed from its Send effects)."""

    purchases: int = 0  # 0200 first sends
    retries: int = 0  # 0200 resends (repeat flag)
    reversals: int = 0  # 0400 sends, repeats included
    keys: dict[str, int] = field(default_factory=dict)  # idempotency key -> intent (0: none)


class TerminalDriver:
    """Runs one firmware against a `publish` function; feed it frames with `receive`."""

    def __init__(
        self,
        firmware: Firmware,
        config: FirmwareConfig,
        journal: Journal,
        publish: Callable[[bytes], bool],
        *,
        codec: Codec = "iso8583",
        time_scale: float = 1.0,
        print_ms: int = PRINT_MS_DEFAULT,
        on_display: Callable[[Display], None] | None = None,
    ) -> None:
        self.fw = firmware
        self.config = config
        self.tid = config.terminal_id
        self.journal = journal
        self.publish = publish
        self.codec = codec
        self.time_scale = time_scale
        self.print_ms = print_ms
        self.on_display = on_display
        self.displays: list[Display] = []
        # Every purchase that reached a final display (one per purchase asked for).
        self.finished: list[Intent] = []
        self.receipts: list[Receipt] = []
        self.wire = WireCounts()
        self.dropped_frames = 0
        # Set while nothing is outstanding: no purchase, no timer, no print job.
        self.idle = asyncio.Event()
        self.stopped = False
        self._loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._prints: dict[str, asyncio.TimerHandle] = {}
        # The purchase in progress, and the ones waiting for the cashier, in order.
        self._intent: Intent | None = None
        self._on_finished: OnFinished | None = None
        self._offers: deque[tuple[int, str, OnFinished, bool, bool]] = deque()
        self._intents = 0
        # Effects not yet carried out, in order; the head waits while a journal
        # write is on its way to disk (`_journaling`).
        self._effects: deque[Effect] = deque()
        self._journaling = False
        # How each kind of effect is carried out (unknown kinds are ignored).
        self._appliers: dict[type, Callable[[Any], None]] = {
            Send: self._send_effect,
            SetTimer: self._set_timer,
            CancelTimer: self._cancel_timer,
            Print: self._print,
            Display: self._display,
            JournalAppend: self._journal_append,
            JournalTrim: self._journal_trim,
            ChipComplete: self._chip_complete,
        }
        # The chip cards that refuse an approval, by PAN: "declined" or "removed".
        self.chip_cards: dict[str, str] = {}
        self._log_info = log.isEnabledFor(logging.INFO)

    # ---------------------------------------------------------------- lifecycle

    def boot(self) -> None:
        """Power on: hand the firmware every committed journal record."""
        # A real transport: the boot nonce comes from the OS (keys unique per boot).
        # The real-time clock (wall ms) rides on Boot and TimerExpired: offline deadlines.
        self._feed(Boot(self.journal.records(), secrets.token_hex(4), realclock.wall_ms()))

    def kill(self) -> None:
        """Power cut: stop every timer and print job; nothing volatile survives."""
        self.stopped = True
        for handle in [*self._timers.values(), *self._prints.values()]:
            handle.cancel()
        self._timers.clear()
        self._prints.clear()
        self._effects.clear()
        waiting = [on for _, _, on, _, _ in self._offers]
        self._offers.clear()
        if self._on_finished is not None:
            waiting.insert(0, self._on_finished)
        self._intent, self._on_finished = None, None
        for on_finished in waiting:
            on_finished(None)

    # ---------------------------------------------------------------- inputs

    def receive(self, payload: bytes) -> None:
        """A frame arrived on this terminal's response topic."""
        if self.stopped:
            return
        if wire.sniff_codec(payload) != self.codec:
            # Only the codec this terminal speaks: a second parser is a second
            # attack surface, and the host always answers in the request's codec.
            self.dropped_frames += 1
            log.warning("terminal %s: dropped a frame not in %s", self.tid, self.codec)
            return
        try:
            msg, _ = wire.decode(payload)
        except ProtocolError as exc:
            self.dropped_frames += 1
            log.warning("terminal %s: dropped a malformed frame: %s", self.tid, exc)
            return
        self._feed(MessageReceived(msg))

    async def purchase(
        self, amount: int, pan: str, wallet: bool = False, preauth: bool = False
    ) -> Intent:
        """Key `amount` (a pre-authorisation's, with `preauth`), confirm, tap `pan` (scan
        it, a wallet code, with `wallet`); return when the terminal shows a final outcome.

        Raises CancelledError if the terminal is killed first.
        """
        done: asyncio.Future[Intent] = self._loop.create_future()

        def finished(intent: Intent | None) -> None:
            if done.done():
                return
            if intent is None:
                done.cancel()
            else:
                done.set_result(intent)

        self.offer(amount, pan, finished, wallet, preauth)
        return await done

    async def close_batch(self) -> None:
        """End of day: ask for a batch close; return when the terminal is idle again."""
        if self.stopped:
            return
        self._feed(BatchCloseRequested())
        await self.idle.wait()

    async def request(self, event: Event) -> None:
        """A cashier's request (a void, a refund): feed it, return when idle again."""
        if self.stopped:
            return
        self._feed(event)
        self._update_idle()
        await self.idle.wait()

    def offer(
        self,
        amount: int,
        pan: str,
        on_finished: OnFinished,
        wallet: bool = False,
        preauth: bool = False,
    ) -> None:
        """Queue a purchase (one at a time, like one cashier); `on_finished` gets the result.

        The load generator's way in: no task, no future per purchase.
        """
        if self.stopped:
            on_finished(None)
            return
        self._offers.append((amount, pan, on_finished, wallet, preauth))
        if self._intent is None:
            self._next_offer()

    def _next_offer(self) -> None:
        if self._intent is not None or not self._offers or self.stopped:
            return
        amount, pan, on_finished, wallet, preauth = self._offers.popleft()
        self._intents += 1
        intent = Intent(self._intents, amount, pan, realclock.loop_ms())
        self._intent, self._on_finished = intent, on_finished
        present: Event = CodeScanned(pan) if wallet else CardPresented(pan)
        keyed: Event = PreauthKeyed(amount) if preauth else AmountKeyed(amount)
        for event in (keyed, ConfirmPressed(), present):
            if self._intent is not intent or self.stopped:
                break
            self._feed(event)
        self._update_idle()

    # ---------------------------------------------------------------- effects

    def _feed(self, event: Event) -> None:
        if self.stopped:
            return
        try:
            effects = self.fw.handle(event)
        except Exception:
            log.exception("terminal %s: firmware crashed on %s", self.tid, type(event).__name__)
            return
        self._effects.extend(effects)
        self._drain()

    def _drain(self) -> None:
        """Carry out queued effects in order, stopping at each journal write until it is durable."""
        queue = self._effects
        apply = self._appliers
        while queue and not self._journaling and not self.stopped:
            eff = queue.popleft()
            handler = apply.get(type(eff))
            if handler is not None:
                handler(eff)
        self._update_idle()

    def _chip_complete(self, eff: ChipComplete) -> None:
        """The card in the reader (the purchase's) answers the approval, after the
        effects before it: a refusal as `chip_cards` says, else it accepts."""
        intent = self._intent
        reason = self.chip_cards.get(intent.pan, "") if intent is not None else ""
        self._loop.call_soon(self._feed, ChipResult(eff.key, not reason, reason))

    def _journal_append(self, eff: JournalAppend) -> None:
        self._journaling = True
        self.journal.append(eff.record, self._journaled)

    def _journal_trim(self, eff: JournalTrim) -> None:
        self._journaling = True
        self.journal.trim(eff.count, self._journaled)

    def _journaled(self, ok: bool) -> None:
        self._journaling = False
        if self.stopped:
            return
        if not ok:  # the disk refused: nothing after the write may happen, as in a crash
            log.error("terminal %s: journal write failed; the terminal stops", self.tid)
            self.kill()
            return
        self._drain()

    def _set_timer(self, eff: SetTimer) -> None:
        old = self._timers.pop(eff.name, None)
        if old is not None:
            old.cancel()
        self._timers[eff.name] = self._loop.call_later(
            eff.delay_ms / 1000 * self.time_scale, self._fire, eff.name
        )

    def _cancel_timer(self, eff: CancelTimer) -> None:
        handle = self._timers.pop(eff.name, None)
        if handle is not None:
            handle.cancel()

    def _print(self, eff: Print) -> None:
        self._prints[eff.job_id] = self._loop.call_later(
            self.print_ms / 1000 * self.time_scale, self._printed, eff
        )

    def _send_effect(self, eff: Send) -> None:
        self._send(eff.message)

    def _send(self, msg: Message) -> None:
        w = self.wire
        if msg.mti == MTI_PURCHASE or msg.mti == MTI_PREAUTH:
            if msg.repeat:
                w.retries += 1
            else:
                w.purchases += 1
            if msg.idem_key and msg.idem_key not in w.keys:
                w.keys[msg.idem_key] = self._intent.n if self._intent is not None else 0
                # A first send (not a resend of a sale recovered from the journal at
                # boot, which may go out while this purchase is being keyed).
                if self._intent is not None and not self._intent.key and not msg.repeat:
                    self._intent.key = msg.idem_key
        elif msg.mti == MTI_REVERSAL:
            w.reversals += 1
        # The transport stamps the transmission time (MAC-covered, wall clock: the
        # host checks it against its own wall clock).
        msg = stamp(msg, self.config.mac_key, realclock.wall_ms())
        try:
            payload = wire.encode(msg, self.codec)
        except ProtocolError as exc:
            log.warning("terminal %s: firmware sent an unencodable message: %s", self.tid, exc)
            return
        self.publish(payload)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self._feed(TimerExpired(name, realclock.wall_ms()))

    def _printed(self, eff: Print) -> None:
        self._prints.pop(eff.job_id, None)
        self.receipts.append(eff.receipt)
        if log.isEnabledFor(logging.INFO):
            log.info("terminal %s: printed %s", self.tid, eff.receipt.to_dict())
        self._feed(PrintFinished(eff.job_id, PrintStatus.OK))

    def _display(self, eff: Display) -> None:
        if len(self.displays) < DISPLAYS_KEPT_MAX:
            self.displays.append(eff)
        if self._log_info:
            log.info("terminal %s: display %s %s", self.tid, eff.outcome.value, eff.text)
        if self.on_display is not None:
            self.on_display(eff)
        intent = self._intent
        if intent is not None and eff.outcome in FINAL_OUTCOMES:
            intent.outcome = eff.outcome.value
            intent.text = eff.text
            intent.rrn = eff.rrn
            intent.finished_ms = realclock.loop_ms()
            self.finished.append(intent)
            on_finished = self._on_finished
            self._intent, self._on_finished = None, None
            if on_finished is not None:
                on_finished(intent)
            if self._offers:
                # Not from inside this effect: the next sale's effects must queue
                # behind the ones of this event still to be carried out.
                self._loop.call_soon(self._next_offer)

    def _update_idle(self) -> None:
        if (
            not self._timers
            and not self._prints
            and not self._effects
            and not self._journaling
            and self._intent is None
            and not self._offers
        ):
            self.idle.set()
        else:
            self.idle.clear()

    @property
    def pending_work(self) -> bool:
        """True while a timer or print job is outstanding (a reversal still running, ...)."""
        return bool(self._timers or self._prints or self._effects or self._journaling)


APPROVED = Outcome.APPROVED.value


class TerminalClient:
    """Many terminal drivers sharing one MQTT connection (one for `terminal run`)."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        via_proxy: bool = False,
        presence_tid: str | None = None,
    ) -> None:
        self.via_proxy = via_proxy
        self.drivers: dict[str, TerminalDriver] = {}
        self._listen: dict[str, str] = {}
        will = None
        self.presence_topic = ""
        if presence_tid is not None:
            self.presence_topic = wire.topic(presence_tid, "presence")
            will = (self.presence_topic, wire.PRESENCE_OFFLINE)
        self.session = Session(
            address,
            client_id=client_id,
            subscriptions=[],
            on_message=self._on_message,
            will=will,
            on_connect=self._on_connect,
        )

    def add(
        self, driver_factory: Callable[[Callable[[bytes], bool]], TerminalDriver]
    ) -> TerminalDriver:
        """Create a driver bound to this connection (call before `start`)."""
        holder: list[str] = []

        def publish(payload: bytes) -> bool:
            return self.session.publish(holder[0], payload)

        driver = driver_factory(publish)
        topics = wire.TerminalTopics.for_terminal(driver.tid, self.via_proxy)
        holder.append(topics.publish)
        self.drivers[driver.tid] = driver
        self._listen[topics.listen] = driver.tid
        self.session.subscriptions = tuple(self._listen)
        return driver

    def _on_connect(self) -> None:
        if self.presence_topic:
            self.session.publish(self.presence_topic, wire.PRESENCE_ONLINE, retain=True)

    def _on_message(self, name: str, payload: bytes) -> None:
        tid = self._listen.get(name)
        if tid is not None:
            self.drivers[tid].receive(payload)

    async def start(self) -> None:
        await self.session.start()

    async def stop(self) -> None:
        if self.presence_topic and self.session.connected.is_set():
            self.session.publish(self.presence_topic, wire.PRESENCE_OFFLINE, retain=True)
        for d in self.drivers.values():
            d.kill()
        await self.session.stop()

    async def __aenter__(self) -> TerminalClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def terminal_config(tid: str, mac_key: bytes, **overrides: Any) -> FirmwareConfig:
    """A firmware config for terminal `tid` with its MAC key (from a key file)."""
    if not mac_key:
        raise ValueError(f"terminal {tid}: no MAC key")
    return FirmwareConfig(terminal_id=tid, mac_key=mac_key, **overrides)


def single_terminal(
    address: BrokerAddress,
    firmware: Firmware,
    config: FirmwareConfig,
    journal: Journal,
    *,
    codec: Codec = "iso8583",
    via_proxy: bool = False,
    time_scale: float = 1.0,
    on_display: Callable[[Display], None] | None = None,
) -> tuple[TerminalClient, TerminalDriver]:
    """One terminal on its own connection (client id = terminal id, with presence)."""
    tid = config.terminal_id
    client = TerminalClient(address, client_id=f"posh-{tid}", via_proxy=via_proxy, presence_tid=tid)
    driver = client.add(
        lambda publish: TerminalDriver(
            firmware,
            config,
            journal,
            publish,
            codec=codec,
            time_scale=time_scale,
            on_display=on_display,
        )
    )
    return client, driver
