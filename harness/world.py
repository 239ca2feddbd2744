"""The simulated world: terminal, people, printer, network and host on one clock.

The world is a driver in the h11 sense: it carries events into the firmware and
the host, and carries their effects out, through faults, on the virtual clock.
Everything observable is written to the trace; the world also holds the harness's
ground truth (the purchase *intents*), which the firmware never sees.

Attribution. Each purchase step is one intent. The simulated cashier runs one
intent at a time (a purchase step waits while the previous intent is unfinished
or the terminal is off), so every display belongs to the intent in progress. A
purchase request on the wire belongs to the intent that was in progress when its
idempotency key (or STAN, for firmwares without keys) first appeared; a fresh (not
repeat) request that reuses a key while another intent is in progress belongs to
that other intent (a firmware reusing keys, e.g. across boots or devices). A
display that names a host reference (RRN) belongs to the sale that reference was
given to, except while the terminal handles a 0210: then it belongs to the sale
that response answers (by key, else STAN), whatever RRN the response carries.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from acquirer.catalogue import CATALOGUE_CARDS, CATALOGUE_WALLETS
from acquirer.host import Acquirer, CardAccount, HostConfig, HostTxn
from acquirer.protocol import Message
from faults.base import Fault, FaultState
from faults.devices import (
    DoubleConfirm,
    DoubleTap,
    KeyingError,
    Misread,
)
from faults.network import Forge, NetworkFault
from faults.power import PowerCut
from harness.attacker import Attacker
from harness.chip import ChipReader
from harness.credits import CashierCredits
from harness.offline import offline_display_intent
from scenarios.model import PAYMENT_ACTIONS, Scenario, Step, TerminalSpec, scenario_to_dict
from terminal.firmware import (
    EFFECT_TYPES,
    FINAL_OUTCOMES,
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelTimer,
    CardPresented,
    ChipComplete,
    ChipResult,
    CodeScanned,
    Display,
    Event,
    Firmware,
    FirmwareConfig,
    FirmwareContractError,
    FirmwareProtocolError,
    JournalAppend,
    JournalTrim,
    MessageReceived,
    Outcome,
    PreauthKeyed,
    Print,
    PrintFinished,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
)

from .engine import EVENTS_MAX_DEFAULT, Scheduler, SimClock
from .trace import TRACE_VERSION, Trace
from .world_devices import DevicesMixin
from .world_model import (
    _INPUT_NAMES as _INPUT_NAMES,
)
from .world_model import (
    ATTRIBUTION_WINDOW as ATTRIBUTION_WINDOW,
)
from .world_model import (
    CRASHES_MAX as CRASHES_MAX,
)
from .world_model import (
    INTENTS_KEPT as INTENTS_KEPT,
)
from .world_model import (
    RETAPS_MAX as RETAPS_MAX,
)
from .world_model import (
    RUN_TAIL_MS as RUN_TAIL_MS,
)
from .world_model import (
    STALE_SCREEN_AFTER_MS as STALE_SCREEN_AFTER_MS,
)
from .world_model import (
    STEPS_INLINE_MAX as STEPS_INLINE_MAX,
)
from .world_model import (
    WATCHDOG_REBOOT_MS as WATCHDOG_REBOOT_MS,
)

# The world's constants and types, where they were before they had a module.
from .world_model import (
    FirmwareFactory as FirmwareFactory,
)
from .world_model import (
    HostSite,
    Lane,
)
from .world_model import (
    IntentState as IntentState,
)
from .world_model import (
    mac_key_for as mac_key_for,
)
from .world_people import PeopleMixin
from .world_wire import WireMixin


def make_host(scenario: Scenario, host_db: str = ":memory:") -> Acquirer:
    """The mock acquirer of a scenario: its cards and wallets over the test-card
    catalogue, a MAC key for each terminal."""
    cards: dict[str, CardAccount] = {c.pan: c for c in CATALOGUE_CARDS + CATALOGUE_WALLETS}
    for c in scenario.cards:
        cards[c.pan] = CardAccount(
            pan=c.pan, balance=c.balance, rc=c.rc, slow_ms=c.slow_ms, partial=c.partial
        )
    for w in scenario.wallets:
        cards[w.code] = CardAccount(
            pan=w.code,
            balance=w.balance,
            rc=w.rc,
            confirm_ms=w.confirm_ms if w.confirms else -1,
            answer_rc=w.answer_rc,
        )
    return Acquirer(
        HostConfig(
            mac_keys={t.id: mac_key_for(t.id) for t in scenario.lanes()},
            processing_ms=scenario.host.processing_ms,
            idempotency_retention_ms=scenario.host.idempotency_retention_ms,
            db_path=host_db,
            test_amounts=scenario.host.test_amounts,
            # One host: it refuses an advice past the longest deadline any terminal has.
            advice_deadline_ms=max(t.offline_deadline_ms for t in scenario.lanes()),
        ),
        [cards[p] for p in sorted(cards)],
    )


def _tagged(emit: Callable[[str, dict[str, Any]], int], term: str) -> Callable[..., int]:
    """`emit` with every record naming the terminal `term` (a world of several)."""

    def tagged(kind: str, fields: dict[str, Any]) -> int:
        return emit(kind, {"term": term, **fields})

    return tagged


# Displays about a sale named by its RRN (a void, a refund, a completion, a tip), not
# about the sale whose answer is being handled.
_ABOUT_ANOTHER_SALE = (Outcome.VOIDED, Outcome.REFUNDED, Outcome.COMPLETED, Outcome.TIP_ADDED)


def firmware_config(t: TerminalSpec, key: bytes) -> FirmwareConfig:
    """What the firmware is told of its terminal's settings (`[terminal]`)."""
    return FirmwareConfig(
        terminal_id=t.id,
        merchant_id=t.merchant_id,
        mac_key=key,
        response_timeout_ms=t.response_timeout_ms,
        max_sends=t.max_sends,
        debounce_ms=t.debounce_ms,
        amount_max=t.amount_max,
        reversal_max_tries=t.reversal_max_tries,
        status_inquiry=t.status_inquiry,
        partial_approval=t.partial_approval,
        chip=t.chip,
        offline_floor=t.offline_floor,
        offline_max=t.offline_max,
        offline_deadline_ms=t.offline_deadline_ms,
    )


class World(PeopleMixin, WireMixin, DevicesMixin):
    """One run of one scenario with one firmware."""

    def __init__(
        self,
        scenario: Scenario,
        factory: FirmwareFactory,
        *,
        seed: int | None = None,
        trace: Trace | None = None,
        clock: SimClock | None = None,
        host_db: str = ":memory:",
        firmware_spec: str = "",
        lane: Lane | None = None,
    ) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.clock = clock or SimClock()
        self.sched = lane.sched if lane is not None else Scheduler(self.clock)
        self.trace = trace or Trace(self.clock)
        self.emit = self.trace.emit if lane is None else _tagged(self.trace.emit, lane.name)
        self.firmware_spec = firmware_spec or scenario.firmware
        self.stream_steps = len(scenario.steps) > STEPS_INLINE_MAX
        # One seed, one RNG per component, derived by name so that components do
        # not shift each other's draws (nor terminals each other's).
        prefix = f"{self.seed}" if lane is None else f"{self.seed}:{lane.name}"
        self.rng_net = random.Random(f"{prefix}:network")
        # Each boot's nonce (the random part of the terminal's idempotency keys).
        self.rng_boot = random.Random(f"{prefix}:boot")

        t = scenario.terminal
        self.tid = t.id
        key = mac_key_for(t.id)
        self.mac_key = key
        self.host = lane.host if lane is not None else make_host(scenario, host_db)
        self.fw_config = firmware_config(t, key)
        self.factory = factory
        self.fw: Firmware | None = None
        self.powered = False
        self.epoch = 0  # bumps on every power cut: stale timers and print jobs die
        self.journal: list[Any] = []  # durable: survives power cuts
        self.timers: dict[str, int] = {}
        self.timer_gen = 0
        self.crashes = 0

        self._init_faults(scenario, lane)

        # Host state outside the host's own store: down after a crash.
        self.site = lane.site if lane is not None else HostSite()

        # Printer: one job at a time.
        self.printer_free_ms = 0
        self.print_jobs = 0

        self._init_people(scenario)

    def _init_faults(self, scenario: Scenario, lane: Lane | None) -> None:
        """The scenario's faults, by layer, each with its own runtime counter."""
        self.f_net: list[FaultState] = []
        self.f_forge: list[FaultState] = []
        self.f_host: list[FaultState] = []
        self.f_printer: list[FaultState] = []
        self.f_misread: list[FaultState] = []
        self.f_purchase: list[FaultState] = []
        self.f_power_after: list[FaultState] = []
        self.f_power_at: list[FaultState] = []
        self.f_clock: list[FaultState] = []
        self.f_phone: list[FaultState] = []
        self.attacker = Attacker(self)  # the attacker faults (harness/attacker.py)
        self.chip = ChipReader(self)  # the chip card in the reader (harness/chip.py)
        self.credits = CashierCredits(self)  # voids and refunds (harness/credits.py)
        self.fault_index: dict[int, int] = {}
        self.fault_numbers = lane.fault_numbers if lane is not None else []
        for f in scenario.faults:
            self.add_fault(f)

    def _init_people(self, scenario: Scenario) -> None:
        """The people's state and the ground truth (the intents)."""
        self.intents: dict[int, IntentState] = {}
        self.intents_started = 0
        self.active: IntentState | None = None
        self.waiting: deque[Step] = deque()
        self.purchase_no = 0
        self.tap_no = 0
        self.retaps = 0
        self.reprints: dict[str, int] = {}
        self.key_intent: dict[str, int] = {}
        self.stan_intent: dict[int, int] = {}
        self.rrn_intent: dict[str, int] = {}
        # What each intent was last shown APPROVED with: its RRN, or "key:<key>" for an
        # offline approval (no RRN yet); what its receipt says, so what a cashier reads
        # off it to void, refund or tip the sale.
        self.receipt_rrn: dict[int, str] = {}
        # The pre-authorisations (intents) the terminal has shown COMPLETED, with the
        # hold's RRN: a tip on a completion is owed only once the cashier was told it
        # was completed (the completion's slip names the RRN the tip goes on).
        self.completed_shown: dict[int, str] = {}
        self.host_rrns: deque[str] = deque(maxlen=8)  # the latest sales' RRNs (host_foreign_rrn)
        # The 0210 the firmware is handling right now (None outside that).
        self.answering: Message | None = None
        self._md_cache: dict[int, tuple[Message, dict[str, Any]]] = {}
        self.batch_closed_at_end = False
        self.stuck = False
        # The wallet orders' phones: when the next host tick is scheduled (-1: none).
        self.host.phone = self._phone
        # A world of several terminals: whose trace a wallet order's host record goes to.
        self.txn_emit: Callable[[HostTxn], Callable[[str, dict[str, Any]], int]] | None = None
        self.stale_screens = {w.code for w in scenario.wallets if w.stale_screen}
        self.features: frozenset[str] = frozenset()  # what the firmware declares
        self.fw_seen = False  # a firmware was made (its features are known)
        # A world of several terminals: how a customer walks to the next one.
        self.walk: Callable[[Any, IntentState], None] | None = None

    # ------------------------------------------------------------------ running

    def add_fault(self, fault: Fault) -> FaultState:
        """Arm one more fault. Its counters start now: `nth = 1` is the next match."""
        s = FaultState(fault)
        k = len(self.fault_index)
        self.fault_index[id(s)] = self.fault_numbers[k] if k < len(self.fault_numbers) else k
        if isinstance(fault, NetworkFault):
            self.f_net.append(s)
        elif isinstance(fault, Forge):
            self.f_forge.append(s)
        elif fault.LAYER == "host":
            self.f_host.append(s)
        elif fault.LAYER == "printer":
            self.f_printer.append(s)
        elif isinstance(fault, Misread):
            self.f_misread.append(s)
        elif isinstance(fault, DoubleTap | DoubleConfirm | KeyingError):
            self.f_purchase.append(s)
        elif isinstance(fault, PowerCut) and fault.after:
            self.f_power_after.append(s)
        elif isinstance(fault, PowerCut):
            self.f_power_at.append(s)
            if self.powered or self.clock.now_ms > 0:  # armed during a run
                self.sched.at(fault.at_ms, self._power_cut_at, s)
        elif fault.LAYER == "clock":
            self.f_clock.append(s)
        elif fault.LAYER == "phone":
            self.f_phone.append(s)
        elif fault.LAYER == "chip":
            self.chip.faults.append(s)
        elif fault.LAYER == "attacker":
            self.attacker.arm(s)
        return s

    def start(self, *, emit_run: bool = True) -> None:
        """Power on and schedule the scenario's steps and timed faults (a terminal in
        a world of several leaves the `run` record to the world)."""
        if emit_run:
            self.emit_run()
        # Steps are scheduled one at a time, each when the one before it runs, so a
        # run of a million purchases never holds a million queued events.
        self._next_step = 0
        self._schedule_next_step()
        for s in self.f_power_at:
            self.sched.at(s.fault.at_ms, self._power_cut_at, s)  # type: ignore[attr-defined]
        self.attacker.start()
        self._power_on(None)

    def emit_run(self) -> None:
        """The trace's first record: the run and its whole scenario."""
        sc = self.sc
        self.emit(
            "run",
            {
                "v": TRACE_VERSION,
                "name": sc.name,
                "seed": self.seed,
                "firmware": self.firmware_spec,
                # The whole scenario as data: a trace replays without its file. A
                # very long scenario (a load run) would make this one line huge:
                # its steps go into the trace one `step` record at a time instead.
                **(
                    {"scenario": scenario_to_dict(sc)}
                    if not self.stream_steps
                    else {
                        "scenario": scenario_to_dict(replace(sc, steps=())),
                        "steps_streamed": len(sc.steps),
                    }
                ),
            },
        )

    def _queue_ms(self) -> int:
        """How long the customers may take after the last step: the cashier serves them
        one at a time, and each may take `settle_within_ms` (eventually-settles), so
        customers queued at once on a slow host are not cut off by the run's limit."""
        customers = sum(1 for s in self.sc.steps if s.action in PAYMENT_ACTIONS)
        return customers * max(0, self.sc.expect.settle_within_ms)

    def inject(self, step: Step) -> None:
        """Schedule one more step (for interactive drivers such as stateful tests)."""
        self.sched.at(step.at_ms, self._step, step)

    def run(self) -> bool:
        """Run to quiet (or the limits). True when everything came to rest."""
        sc = self.sc
        self.start()
        last_ms = sc.steps[-1].at_ms if sc.steps else 0
        until_ms = sc.max_ms if sc.max_ms >= 0 else last_ms + RUN_TAIL_MS + self._queue_ms()
        events_max = EVENTS_MAX_DEFAULT + 1_000 * len(sc.steps)
        quiet = self._run_until(until_ms, events_max)
        while quiet and self.waiting and self.active is not None and not self.active.final:
            # Nothing more will happen for the unfinished intent: the cashier gives
            # up on it and serves the customers still waiting.
            self._give_up(self.active.intent)
            quiet = self._run_until(until_ms, events_max)
        if quiet and sc.close_batch and self.powered and self.fw is not None:
            self.batch_closed_at_end = True
            self._input(BatchCloseRequested())
            quiet = self._run_until(until_ms, events_max)
        self.stuck = not quiet
        self.emit(
            "end",
            {
                "quiet": quiet,
                "events": self.sched.executed,
                "pending": len(self.sched),
                "crashes": self.crashes,
            },
        )
        return quiet

    # ------------------------------------------------------------------ firmware

    def _input(self, event: Event) -> None:
        fw = self.fw
        if fw is None:
            return self._ignored(_INPUT_NAMES.get(type(event), "input"))
        rec: dict[str, Any] = {"event": _INPUT_NAMES.get(type(event), type(event).__name__)}
        if isinstance(event, (AmountKeyed, PreauthKeyed)):
            rec["amount"] = event.amount
            if self.active is not None:
                rec["intent"] = self.active.intent
        elif isinstance(event, CardPresented):
            rec["pan"] = event.pan
        elif isinstance(event, CodeScanned):
            rec["code"] = event.code
        elif isinstance(event, ChipResult):
            rec["key"] = event.key
            rec["ok"] = event.ok
            if event.reason:
                rec["reason"] = event.reason
        elif isinstance(event, TimerExpired):
            rec["name"] = event.name
        elif isinstance(event, PrintFinished):
            rec["job"] = event.job_id
            rec["status"] = event.status.value
        elif isinstance(event, Boot):
            rec["journal"] = len(event.journal)
            rec["nonce"] = event.nonce
        if not isinstance(event, MessageReceived):
            self.emit("input", rec)
        try:
            effects = fw.handle(event)
            self._apply(effects)
        except FirmwareProtocolError:
            raise  # no verdict: the run stops with the protocol error
        except Exception as exc:  # a firmware bug must not stop the world
            self._crash(exc)
        return None

    def _crash(self, exc: Exception) -> None:
        self.crashes += 1
        self.emit("crash", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        self._power_off("watchdog")
        if self.crashes < CRASHES_MAX:
            self.sched.after(WATCHDOG_REBOOT_MS, self._power_on, None)

    def _apply(self, effects: Sequence[Any]) -> None:
        epoch = self.epoch
        for eff in effects:
            if self.epoch != epoch:
                return  # the power went off between two effects
            tp = type(eff)
            if tp is Send:
                self._send(eff.message)
            elif tp is JournalAppend:
                self.journal.append(eff.record)
                self.emit("journal", {"record": dict(eff.record)})
                self._power_after("journal", "")
            elif tp is SetTimer:
                self._set_timer(eff.name, eff.delay_ms)
            elif tp is CancelTimer:
                self.timers.pop(eff.name, None)
            elif tp is Display:
                self._display(eff)
            elif tp is Print:
                self._print(eff)
            elif tp is ChipComplete:
                self.chip.complete(eff)
            elif tp is JournalTrim:
                count = max(0, min(eff.count, len(self.journal)))
                del self.journal[:count]
                self.emit("journal_trim", {"count": count, "left": len(self.journal)})
                if self.attacker.faults:
                    self.attacker.on_trim()
            elif not isinstance(eff, EFFECT_TYPES):
                raise FirmwareContractError(f"not an effect: {eff!r}"[:200])

    def _set_timer(self, name: str, delay_ms: int) -> None:
        if delay_ms < 0:
            raise FirmwareContractError(f"timer {name!r} with negative delay {delay_ms}")
        now = self.clock.now_ms
        for s in self.f_clock:
            if s.hit(now):
                drift = s.fault.drift_ppm  # type: ignore[attr-defined]
                delay_ms = delay_ms + delay_ms * drift // 1_000_000
                self._fault(s, {"timer": name, "delay_ms": delay_ms})
        self.timer_gen += 1
        self.timers[name] = self.timer_gen
        self.sched.after(delay_ms, self._timer_fire, (name, self.timer_gen, self.epoch))

    def _run_until(self, until_ms: int, events_max: int) -> bool:
        """Run the queue; True when it came to rest (nothing left that would act)."""
        return self.sched.run(until_ms, events_max) or self.sched.drop_if_all(self.stale_timer)

    def stale_timer(self, fn: Callable[[Any], None], arg: Any) -> bool:
        """Whether a queued callback is a timer of this world that was cancelled,
        replaced or outlived by a power cut: firing it would do nothing. (A long timer,
        e.g. an offline sale's 24-hour deadline, cancelled once the sale is uploaded,
        must not keep a run that has come to rest from being quiet.)"""
        if getattr(fn, "__func__", None) is not World._timer_fire:
            return False
        owner = fn.__self__  # type: ignore[attr-defined]
        name, gen, epoch = arg
        return bool(epoch != owner.epoch or owner.timers.get(name) != gen)

    def _timer_fire(self, arg: tuple[str, int, int]) -> None:
        name, gen, epoch = arg
        if epoch != self.epoch or self.timers.get(name) != gen:
            return
        del self.timers[name]
        self._input(TimerExpired(name, self.clock.now_ms))

    def _display(self, eff: Display) -> None:
        a = self.active
        if eff.rrn:
            # A display naming a host reference belongs to the sale that got it,
            # even if the cashier has moved on (e.g. "last sale approved" at boot);
            # one made while handling a 0210 belongs to the sale the 0210 answers,
            # even if it carries another sale's RRN.
            answering = self.answering
            if eff.outcome in _ABOUT_ANOTHER_SALE:
                answering = None  # about the sale it names, not the refund's answer
            n = self._answered(answering) if answering is not None else self.rrn_intent.get(eff.rrn)
            if n is not None and n in self.intents:
                a = self.intents[n]
        elif eff.key:
            a = offline_display_intent(self, eff.key, a)
        rec: dict[str, Any] = {"outcome": eff.outcome.value, "text": eff.text}
        if eff.rrn:
            rec["rrn"] = eff.rrn
        if eff.amount:
            rec["amount"] = eff.amount
        if eff.key:
            rec["key"] = eff.key
        if a is not None:
            rec["intent"] = a.intent
        self.emit("display", rec)
        if eff.outcome == Outcome.APPROVED and a is not None and (eff.rrn or eff.key):
            self.receipt_rrn[a.intent] = eff.rrn or f"key:{eff.key}"
        held = self.rrn_intent.get(eff.rrn) if eff.outcome == Outcome.COMPLETED else None
        if held is not None:
            self.completed_shown[held] = eff.rrn
        if eff.outcome == Outcome.TIP_ADDED:
            self.credits.tip_shown(eff.rrn)
        if eff.outcome in FINAL_OUTCOMES and a is not None and not a.final:
            self._finalised(a, eff.outcome.value)
        elif eff.outcome == Outcome.RECEIPT_PENDING and self.sc.people.reprint_on_pending:
            n = self.reprints.get(eff.rrn, 0)
            if n < self.sc.people.reprints_max:
                self.reprints[eff.rrn] = n + 1
                self.sched.after(self.sc.people.reprint_after_ms, self._reprint, None)

    def _reprint(self, _: None) -> None:
        if self.powered:
            self.emit("cashier", {"action": "reprint"})
            self._input(ReprintRequested())
