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
from dataclasses import dataclass, replace
from typing import Any

from acquirer.catalogue import CATALOGUE_CARDS, CATALOGUE_WALLETS
from acquirer.host import Acquirer, CardAccount, HostAction, HostConfig, Ticket
from acquirer.protocol import MTI_PURCHASE, MTI_PURCHASE_RESP, Message, sign, stamp
from faults.base import Fault, FaultState
from faults.devices import (
    DoubleConfirm,
    DoubleTap,
    KeyingError,
    LateConfirm,
    Misread,
    PaperOut,
    PrinterJam,
    PrintFailure,
)
from faults.host import (
    HostCrash,
    HostDoubleCharge,
    HostForeignRrn,
    HostLoseReversal,
    RcBurst,
    SlowHost,
)
from faults.network import Forge, NetworkFault, Partition
from faults.power import PowerCut
from harness.attacker import Attacker
from harness.chip import ChipReader
from scenarios.model import Scenario, Step, scenario_to_dict, step_to_dict
from terminal.firmware import (
    EFFECT_TYPES,
    FINAL_OUTCOMES,
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CancelTimer,
    CardPresented,
    ChipComplete,
    ChipResult,
    CodeScanned,
    ConfirmPressed,
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
    Print,
    PrintFinished,
    PrintStatus,
    ReprintRequested,
    Send,
    SetTimer,
    TimerExpired,
    firmware_features,
)

from .engine import EVENTS_MAX_DEFAULT, Scheduler, SimClock
from .trace import TRACE_VERSION, Trace

FirmwareFactory = Callable[[FirmwareConfig], Firmware]

# The customer taps again at most this many times after misreads, per attempt.
RETAPS_MAX = 5
# A watchdog reboots a crashed firmware after this long.
WATCHDOG_REBOOT_MS = 2_000
# After this many crashes in one run the watchdog stops rebooting: a firmware that
# crashes in a loop would otherwise run until the event limit.
CRASHES_MAX = 20
# How many keys, STANs and RRNs the world remembers for attribution, and how many
# finished intents it keeps: bounds memory on long runs.
ATTRIBUTION_WINDOW = 50_000
INTENTS_KEPT = 1_000
# A scenario with more steps than this writes them as `step` trace records, not
# inline in the first line (which would be tens of megabytes for a load run).
STEPS_INLINE_MAX = 10_000
# A phone showing an old "payment successful" screen: the cashier sees it this long
# after the scan.
STALE_SCREEN_AFTER_MS = 2_000
# Default slack after the last step before a run is cut off (besides each customer's
# own time, `World._queue_ms`).
RUN_TAIL_MS = 3_600_000

_INPUT_NAMES = {
    AmountKeyed: "amount_keyed",
    ConfirmPressed: "confirm",
    CardPresented: "card",
    CodeScanned: "scan",
    TimerExpired: "timer",
    PrintFinished: "print_finished",
    ReprintRequested: "reprint",
    BatchCloseRequested: "batch_close",
    ChipResult: "chip_result",
    Boot: "boot",
    CancelPressed: "cancel",
    MessageReceived: "message",
}


@dataclass(slots=True)
class IntentState:
    """What the harness knows about one purchase intent while the run goes on."""

    intent: int
    card: str
    amount: int
    attempts: int = 0
    final: str = ""
    final_ms: int = -1
    started_ms: int = 0
    wallet: bool = False  # paid by scanning a wallet code (`card` is the code)


def mac_key_for(terminal_id: str) -> bytes:
    """The MAC key the simulated host and terminal share (per terminal)."""
    return f"posharness-mac-{terminal_id}".encode()


class World:
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
    ) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.clock = clock or SimClock()
        self.sched = Scheduler(self.clock)
        self.trace = trace or Trace(self.clock)
        self.emit = self.trace.emit
        self.firmware_spec = firmware_spec or scenario.firmware
        self.stream_steps = len(scenario.steps) > STEPS_INLINE_MAX
        # One seed, one RNG per component, derived by name so that components do
        # not shift each other's draws.
        self.rng_net = random.Random(f"{self.seed}:network")
        # Each boot's nonce (the random part of the terminal's idempotency keys).
        self.rng_boot = random.Random(f"{self.seed}:boot")

        t = scenario.terminal
        self.tid = t.id
        key = mac_key_for(t.id)
        self.mac_key = key
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
        self.host = Acquirer(
            HostConfig(
                mac_keys={t.id: key},
                processing_ms=scenario.host.processing_ms,
                idempotency_retention_ms=scenario.host.idempotency_retention_ms,
                db_path=host_db,
                test_amounts=scenario.host.test_amounts,
            ),
            [cards[p] for p in sorted(cards)],
        )
        self.fw_config = FirmwareConfig(
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
        )
        self.factory = factory
        self.fw: Firmware | None = None
        self.powered = False
        self.epoch = 0  # bumps on every power cut: stale timers and print jobs die
        self.journal: list[Any] = []  # durable: survives power cuts
        self.timers: dict[str, int] = {}
        self.timer_gen = 0
        self.crashes = 0

        # Faults by layer, each with its own runtime counter.
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
        self.fault_index: dict[int, int] = {}
        for f in scenario.faults:
            self.add_fault(f)

        # Host state outside the host's own store: down after a crash.
        self.host_down_until = -1
        self.host_epoch = 0

        # Printer: one job at a time.
        self.printer_free_ms = 0
        self.print_jobs = 0

        # People and ground truth.
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
        self.host_rrns: deque[str] = deque(maxlen=8)  # the latest sales' RRNs (host_foreign_rrn)
        # The 0210 the firmware is handling right now (None outside that).
        self.answering: Message | None = None
        self._md_cache: dict[int, tuple[Message, dict[str, Any]]] = {}
        self.batch_closed_at_end = False
        self.stuck = False
        # The wallet orders' phones: when the next host tick is scheduled (-1: none).
        self.wallet_tick_ms = -1
        self.host.phone = self._phone
        self.stale_screens = {w.code for w in scenario.wallets if w.stale_screen}
        self.features: frozenset[str] = frozenset()  # what the firmware declares
        self.fw_seen = False  # a firmware was made (its features are known)

    # ------------------------------------------------------------------ running

    def add_fault(self, fault: Fault) -> FaultState:
        """Arm one more fault. Its counters start now: `nth = 1` is the next match."""
        s = FaultState(fault)
        self.fault_index[id(s)] = len(self.fault_index)
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

    def start(self) -> None:
        """Power on and schedule the scenario's steps and timed faults."""
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
        # Steps are scheduled one at a time, each when the one before it runs, so a
        # run of a million purchases never holds a million queued events.
        self._next_step = 0
        self._schedule_next_step()
        for s in self.f_power_at:
            self.sched.at(s.fault.at_ms, self._power_cut_at, s)  # type: ignore[attr-defined]
        self.attacker.start()
        self._power_on(None)

    def _queue_ms(self) -> int:
        """How long the customers may take after the last step: the cashier serves them
        one at a time, and each may take `settle_within_ms` (eventually-settles), so
        customers queued at once on a slow host are not cut off by the run's limit."""
        customers = sum(1 for s in self.sc.steps if s.action in ("purchase", "scan"))
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
        quiet = self.sched.run(until_ms, events_max)
        while quiet and self.waiting and self.active is not None and not self.active.final:
            # Nothing more will happen for the unfinished intent: the cashier gives
            # up on it and serves the customers still waiting.
            self._give_up(self.active.intent)
            quiet = self.sched.run(until_ms, events_max)
        if quiet and sc.close_batch and self.powered and self.fw is not None:
            self.batch_closed_at_end = True
            self._input(BatchCloseRequested())
            quiet = self.sched.run(until_ms, events_max)
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

    # ------------------------------------------------------------------ people

    def _schedule_next_step(self) -> None:
        steps = self.sc.steps
        if self._next_step < len(steps):
            step = steps[self._next_step]
            self._next_step += 1
            self.sched.at(step.at_ms, self._scenario_step, step)

    def _scenario_step(self, step: Step) -> None:
        if self.stream_steps:
            self.emit("step", {"step": step_to_dict(step)})
        self._schedule_next_step()
        self._step(step)

    def _step(self, step: Step) -> None:
        if step.action == "purchase" or step.action == "scan":
            if self._busy():
                self.waiting.append(step)
                return
            self._start_intent(step)
        elif step.action == "batch_close":
            self._input(BatchCloseRequested())
        elif step.action == "reprint":
            self._input(ReprintRequested())
        elif step.action == "cancel":
            self._cancel(None)

    def _busy(self) -> bool:
        a = self.active
        return (not self.powered) or (a is not None and not a.final)

    def _start_intent(self, step: Step) -> None:
        self.intents_started += 1
        n = self.intents_started
        wallet = step.action == "scan"
        st = IntentState(
            intent=n,
            card=step.card,
            amount=step.amount,
            started_ms=self.clock.now_ms,
            wallet=wallet,
        )
        self.intents[n] = st
        self._bound_memory()
        self.active = st
        rec: dict[str, Any] = {"intent": n, "card": step.card, "amount": step.amount}
        if wallet:
            rec["wallet"] = True
        self.emit("intent", rec)
        self._attempt(st)

    def _attempt(self, st: IntentState) -> None:
        """The cashier keys the amount and confirms; the customer taps."""
        st.attempts += 1
        self.purchase_no += 1
        self.retaps = 0
        amount = st.amount
        p = self.sc.people
        double_tap_gap = double_confirm_gap = -1
        for s in self.f_purchase:
            if s.hit(self.clock.now_ms):
                f = s.fault
                self._fault(s, {"purchase": self.purchase_no})
                if isinstance(f, KeyingError):
                    amount = f.amount
                elif isinstance(f, DoubleTap):
                    double_tap_gap = f.gap_ms
                elif isinstance(f, DoubleConfirm):
                    double_confirm_gap = f.gap_ms
        self._input(AmountKeyed(amount))
        self.sched.after(p.confirm_after_ms, self._input_if_on, ConfirmPressed())
        if double_confirm_gap >= 0:
            self.sched.after(
                p.confirm_after_ms + double_confirm_gap, self._input_if_on, ConfirmPressed()
            )
        present = self._scan if st.wallet else self._tap
        self.sched.after(p.tap_after_ms, present, st.card)
        if double_tap_gap >= 0:
            self.sched.after(p.tap_after_ms + double_tap_gap, present, st.card)

    def _tap(self, pan: str) -> None:
        self._present(pan, False)

    def _scan(self, code: str) -> None:
        """The cashier scans the code on the customer's phone (a tap, for wallets)."""
        self._present(code, True)

    def _present(self, pan: str, wallet: bool) -> None:
        if not self.powered:
            return self._ignored("scan" if wallet else "card")
        self.tap_no += 1
        again = self._scan if wallet else self._tap
        for s in self.f_misread:
            if s.hit(self.clock.now_ms):
                self._fault(s, {"tap": self.tap_no})
                self._input(CodeScanned("") if wallet else CardPresented(""))
                if self.retaps < RETAPS_MAX:
                    self.retaps += 1
                    self.sched.after(self.sc.people.retap_after_ms, again, pan)
                else:
                    # The customer gives up on the card; the cashier cancels the sale.
                    self.sched.after(self.sc.people.retap_after_ms, self._cancel, None)
                return None
        if not wallet:
            self.chip.pan = pan
        self._input(CodeScanned(pan) if wallet else CardPresented(pan))
        if wallet and pan in self.stale_screens and self.active is not None:
            self.sched.after(STALE_SCREEN_AFTER_MS, self._paid_screen, self.active.intent)
        return None

    def _paid_screen(self, n: int) -> None:
        """The phone shows an old "payment successful" screen; the cashier, seeing
        it, presses confirm on the terminal as if that settled it."""
        if self.active is None or self.active.intent != n or self.active.final:
            return
        self.emit("cashier", {"intent": n, "action": "sees-paid-screen"})
        self._input_if_on(ConfirmPressed())

    def _phone(self, req: Message, confirm_ms: int) -> int:
        """When the customer confirms a waiting wallet order (the host asks): the
        account's delay, unless a `late_confirm` fault makes it later or never."""
        for s in self.f_phone:
            if s.hit(self.clock.now_ms):
                f: LateConfirm = s.fault  # type: ignore[assignment]
                confirm_ms = -1 if f.never else confirm_ms + f.extra_ms
                self._fault(s, {"key": req.idem_key, "confirm_ms": confirm_ms})
        return confirm_ms

    def _cancel(self, _: None) -> None:
        self.emit("cashier", {"action": "cancel"})
        self._input_if_on(CancelPressed())

    def _input_if_on(self, event: Event) -> None:
        if not self.powered:
            return self._ignored(_INPUT_NAMES.get(type(event), "input"))
        self._input(event)
        return None

    def _ignored(self, what: str) -> None:
        self.emit("ignored", {"input": what, "reason": "terminal is off"})

    def _finalised(self, st: IntentState, outcome: str) -> None:
        st.final = outcome
        st.final_ms = self.clock.now_ms
        p = self.sc.people
        if outcome == Outcome.FAILED.value and st.attempts <= p.retry_on_failed:
            st.final = ""  # the cashier tries again: not final yet
            self.emit(
                "cashier", {"intent": st.intent, "action": "retry", "attempt": st.attempts + 1}
            )
            self.sched.after(p.retry_after_ms, self._retry, (st.intent, st.attempts))
            return
        self._next_waiting()

    def _retry(self, arg: tuple[int, int]) -> None:
        n, attempts = arg
        st = self.intents.get(n)
        if st is None or st.final or st.attempts != attempts or self.active is not st:
            return
        if not self.powered:
            return
        self._attempt(st)

    def _next_waiting(self) -> None:
        if self.waiting and not self._busy():
            step = self.waiting.popleft()
            self.sched.after(0, self._step_from_queue, step)

    def _step_from_queue(self, step: Step) -> None:
        if self._busy():
            self.waiting.appendleft(step)
            return
        self._start_intent(step)

    def _give_up(self, n: int) -> None:
        st = self.intents.get(n)
        if st is None:
            return
        self.emit("cashier", {"intent": n, "action": "give-up"})
        st.final = "abandoned"
        st.final_ms = -1
        self._next_waiting()

    # ------------------------------------------------------------------ firmware

    def _input(self, event: Event) -> None:
        fw = self.fw
        if fw is None:
            return self._ignored(_INPUT_NAMES.get(type(event), "input"))
        rec: dict[str, Any] = {"event": _INPUT_NAMES.get(type(event), type(event).__name__)}
        if isinstance(event, AmountKeyed):
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

    def _timer_fire(self, arg: tuple[str, int, int]) -> None:
        name, gen, epoch = arg
        if epoch != self.epoch or self.timers.get(name) != gen:
            return
        del self.timers[name]
        self._input(TimerExpired(name))

    def _display(self, eff: Display) -> None:
        a = self.active
        if eff.rrn:
            # A display naming a host reference belongs to the sale that got it,
            # even if the cashier has moved on (e.g. "last sale approved" at boot);
            # one made while handling a 0210 belongs to the sale the 0210 answers,
            # even if it carries another sale's RRN.
            answering = self.answering
            n = self._answered(answering) if answering is not None else self.rrn_intent.get(eff.rrn)
            if n is not None and n in self.intents:
                a = self.intents[n]
        rec: dict[str, Any] = {"outcome": eff.outcome.value, "text": eff.text}
        if eff.rrn:
            rec["rrn"] = eff.rrn
        if eff.amount:
            rec["amount"] = eff.amount
        if a is not None:
            rec["intent"] = a.intent
        self.emit("display", rec)
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

    # ------------------------------------------------------------------ printer

    def _print(self, eff: Print) -> None:
        self.print_jobs += 1
        now = self.clock.now_ms
        status = PrintStatus.OK
        for s in self.f_printer:
            if s.hit(now):
                f = s.fault
                status = (
                    PrintStatus.JAMMED
                    if isinstance(f, PrinterJam)
                    else PrintStatus.NO_PAPER
                    if isinstance(f, PaperOut)
                    else PrintStatus.FAILED
                    if isinstance(f, PrintFailure)
                    else status
                )
                self._fault(s, {"job": eff.job_id})
        start = max(now, self.printer_free_ms)
        done = start + self.sc.people.print_ms
        self.printer_free_ms = done
        self.emit("print_start", {"job": eff.job_id})
        self.sched.at(done, self._print_done, (eff, status, self.epoch))
        self._power_after("print", "")

    def _print_done(self, arg: tuple[Print, PrintStatus, int]) -> None:
        eff, status, epoch = arg
        if epoch != self.epoch:
            return
        rec: dict[str, Any] = {"job": eff.job_id, "status": status.value}
        rec["receipt"] = eff.receipt.to_dict()
        if self.active is not None:
            rec["intent"] = self.active.intent
        self.emit("print", rec)
        self._input(PrintFinished(eff.job_id, status))

    # ------------------------------------------------------------------ power

    def _power_cut_at(self, s: FaultState) -> None:
        if s.hit(self.clock.now_ms):
            self._fault(s, {})
            self._power_off("cut")
            self.sched.after(s.fault.off_ms, self._power_on, None)  # type: ignore[attr-defined]

    def _power_after(self, point: str, mti: str) -> None:
        for s in self.f_power_after:
            f = s.fault
            if f.after == point and (not f.mti or f.mti == mti) and s.hit(self.clock.now_ms):  # type: ignore[attr-defined]
                self._fault(s, {"after": point})
                self._power_off("cut")
                self.sched.after(f.off_ms, self._power_on, None)  # type: ignore[attr-defined]
                return

    def _power_off(self, reason: str) -> None:
        if not self.powered:
            return
        self.powered = False
        close = getattr(self.fw, "close", None)
        if close is not None:
            close()  # an exec: firmware's process dies with the power
        self.fw = None
        self.epoch += 1
        self.timers.clear()
        self.printer_free_ms = self.clock.now_ms
        self.emit("power", {"state": "off", "reason": reason})

    def _power_on(self, _: None) -> None:
        if self.powered:
            return
        self.powered = True
        self.emit("power", {"state": "on"})
        try:
            self.fw = self.factory(self.fw_config)
            self.features = firmware_features(self.fw)
            self.fw_seen = True
        except FirmwareProtocolError:
            raise
        except Exception as exc:
            self.fw = None
            self.crashes += 1
            self.emit("crash", {"error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        cut_ms = self.clock.now_ms
        self._input(Boot(tuple(self.journal), f"{self.rng_boot.getrandbits(32):08x}"))
        a = self.active
        if a is not None and not a.final and self.sc.people.restart_after_power and self.powered:
            self.sched.after(
                self.sc.people.retry_after_ms, self._restart, (a.intent, a.attempts, cut_ms)
            )
        elif a is None or a.final:
            self._next_waiting()

    def _restart(self, arg: tuple[int, int, int]) -> None:
        n, attempts, _ = arg
        st = self.intents.get(n)
        if st is None or st.final or st.attempts != attempts or self.active is not st:
            return
        if not self.powered:
            return
        self.emit("cashier", {"intent": n, "action": "restart-after-power"})
        self._attempt(st)

    # ------------------------------------------------------------------ network

    def _bound_memory(self) -> None:
        """Forget the oldest attribution entries and finished intents beyond a
        window: a long run must not grow without limit. A message naming a key
        older than the window is attributed to the intent in progress."""
        tables: tuple[dict[Any, Any], ...] = (
            self.key_intent,
            self.stan_intent,
            self.rrn_intent,
            self.reprints,
        )
        for table in tables:
            while len(table) > ATTRIBUTION_WINDOW:
                del table[next(iter(table))]
        while len(self.intents) > INTENTS_KEPT:
            n = next(iter(self.intents))
            if not self.intents[n].final:
                break
            del self.intents[n]

    def _attribute(self, msg: Message) -> int:
        """The intent a purchase request belongs to (0: none)."""
        a = self.active
        if msg.idem_key:
            n = self.key_intent.get(msg.idem_key)
            if n is None:
                n = a.intent if a is not None else 0
                self.key_intent[msg.idem_key] = n
                self.stan_intent.setdefault(msg.stan, n)
            elif not msg.repeat and a is not None and a.intent != n and not a.final:
                # A fresh request reusing another intent's key: the sale of the
                # customer at the counter, whatever the host makes of the key.
                n = self.key_intent[msg.idem_key] = a.intent
                self.stan_intent[msg.stan] = n
            return n
        n = self.stan_intent.get(msg.stan)
        if n is None or not msg.repeat:
            n = self.active.intent if self.active is not None else 0
            self.stan_intent[msg.stan] = n
        return n

    def _answered(self, resp: Message) -> int | None:
        """The intent whose request a 0210 answers: by key, else by STAN."""
        if resp.idem_key:
            return self.key_intent.get(resp.idem_key)
        return self.stan_intent.get(resp.stan)

    def _send(self, msg: Message) -> None:
        # The terminal's transport stamps the transmission time (MAC-covered).
        msg = stamp(msg, self.fw_config.mac_key, self.clock.now_ms)
        rec: dict[str, Any] = {"from": "terminal", "msg": self._md(msg)}
        if msg.mti == MTI_PURCHASE:
            rec["intent"] = self._attribute(msg)
        self.emit("send", rec)
        self._link("to_host", msg, self._host_receive)
        if self.attacker.faults:
            self.attacker.on_request(msg)
        if msg.mti == MTI_PURCHASE:
            for s in self.f_forge:
                if s.hit(self.clock.now_ms):
                    f: Forge = s.fault  # type: ignore[assignment]
                    forged = replace(
                        msg,
                        mti=MTI_PURCHASE_RESP,
                        rc="00",
                        rrn=f.rrn,
                        auth_code="FRG001",
                        repeat=False,
                        mac="",
                    )
                    self._fault(s, {"msg": self._md(forged)})
                    self.sched.after(
                        self.sc.network.latency_ms + f.delay_ms, self._terminal_receive, forged
                    )
        self._power_after("send", msg.mti)

    def _link(self, direction: str, msg: Message, deliver: Callable[[Message], None]) -> None:
        """One network hop: the fault plan decides what arrives, the transport carries it."""
        self._transmit(direction, self._link_faults(direction, msg), deliver)

    def _link_faults(self, direction: str, msg: Message) -> list[tuple[int, Message]]:
        """What the faults make of `msg`: a list of (extra delay, message) deliveries."""
        deliveries: list[tuple[int, Message]] = [(0, msg)]
        now = self.clock.now_ms
        for s in self.f_net:
            f: NetworkFault = s.fault  # type: ignore[assignment]
            if f.matches(direction, msg) and s.hit(now):
                self._fault(s, {"direction": direction, "mti": msg.mti, "stan": msg.stan})
                deliveries = f.apply(deliveries)
        return deliveries

    def _transmit(
        self,
        direction: str,
        deliveries: list[tuple[int, Message]],
        deliver: Callable[[Message], None],
    ) -> None:
        """The simulated wire: base latency plus seeded jitter. Real transports
        override this and nothing else."""
        net = self.sc.network
        for extra_ms, m in deliveries:
            jitter = self.rng_net.randint(0, net.jitter_ms) if net.jitter_ms else 0
            self.sched.after(net.latency_ms + jitter + extra_ms, deliver, m)

    def _md(self, msg: Message) -> dict[str, Any]:
        """`msg.to_dict()`, cached: a message is traced when sent and again when
        delivered. The cache holds the message itself, so an id is never reused
        while cached; it is bounded and simply cleared when full."""
        hit = self._md_cache.get(id(msg))
        if hit is not None and hit[0] is msg:
            return hit[1]
        if len(self._md_cache) >= 256:
            self._md_cache.clear()
        d = msg.to_dict()
        self._md_cache[id(msg)] = (msg, d)
        return d

    def _fault(self, s: FaultState, detail: dict[str, Any]) -> None:
        rec: dict[str, Any] = {"fault": s.fault.KIND, "index": self.fault_index[id(s)]}
        rec.update(detail)
        if isinstance(s.fault, Partition):
            # An outage lasts to its end, not to the last message it swallowed: the
            # liveness clock ("after the last fault") starts there.
            rec["until_ms"] = s.fault.to_ms
        self.emit("fault", rec)

    def _terminal_receive(self, msg: Message) -> None:
        if not self.powered or self.fw is None:
            self.emit("lost", {"to": "terminal", "reason": "terminal is off", "msg": self._md(msg)})
            return
        self.emit("deliver", {"to": "terminal", "msg": self._md(msg)})
        if msg.mti == MTI_PURCHASE_RESP:
            self.answering = msg
            try:
                self._input(MessageReceived(msg))
            finally:
                self.answering = None
        else:
            self._input(MessageReceived(msg))
        if self.powered:
            self._power_after("receive", msg.mti)

    # ------------------------------------------------------------------ host

    def _host_receive(self, msg: Message) -> None:
        now = self.clock.now_ms
        if now < self.host_down_until:
            self.emit("lost", {"to": "host", "reason": "host is down", "msg": self._md(msg)})
            return
        if 0 <= self.host.wallet_due_ms <= now:
            self._wallet_tick(self.wallet_tick_ms)  # phones first: the same moment
        self.emit("deliver", {"to": "host", "msg": self._md(msg)})
        extra_ms = 0
        crash: HostCrash | None = None
        twice = foreign = False
        for s in self.f_host:
            f = s.fault
            if f.mti and f.mti != msg.mti:  # type: ignore[attr-defined]
                continue
            if not s.hit(now):
                continue
            self._fault(s, {"mti": msg.mti, "stan": msg.stan})
            if isinstance(f, RcBurst):
                resp = self.host.respond_error(msg, f.rc)
                self._host_action(msg, HostAction(action="injected", rc=f.rc, detail="rc burst"))
                self._host_reply(resp)
                return
            if isinstance(f, HostLoseReversal):
                # Acknowledged, signed as any answer, and nothing reversed or stored.
                resp = self.host.respond_error(msg, "00")
                self._host_action(
                    msg, HostAction("reversal-lost", "00", detail="host fault: not reversed")
                )
                self._host_reply(resp)
                return
            if isinstance(f, SlowHost):
                extra_ms += f.extra_ms
            elif isinstance(f, HostDoubleCharge):
                twice = True
            elif isinstance(f, HostForeignRrn):
                foreign = True
            elif isinstance(f, HostCrash):
                if f.when == "before_commit":
                    self._host_crash(f.down_ms)
                    return
                crash = f
        result, action = self.host.begin(msg, now)
        if action is not None:
            self._host_action(msg, action)
        if isinstance(result, Message):
            self._host_reply(result)
            return
        self.sched.at(
            result.finish_at_ms + extra_ms,
            self._host_finish,
            (result, crash, self.host_epoch, twice, foreign),
        )

    def _host_finish(self, arg: tuple[Ticket, HostCrash | None, int, bool, bool]) -> None:
        ticket, crash, epoch, twice, foreign = arg
        if epoch != self.host_epoch:
            self.host.abandon(ticket)
            self.emit("host", {"action": "abandoned", "stan": ticket.request.stan})
            return
        resp, action = self.host.finish(ticket, self.clock.now_ms)
        self._host_action(ticket.request, action)
        if self.host.wallet_due_ms >= 0:
            self._wallet_schedule()
        if twice and action.action == "charge":
            self._host_charge_again(ticket.request)
        if foreign and resp.rrn:
            resp = self._foreign_rrn(resp)
        if crash is not None:
            self._host_crash(crash.down_ms)
            return
        if action.action == "charge-no-reply":
            self.emit(
                "lost", {"to": "terminal", "reason": "test card: no reply", "msg": self._md(resp)}
            )
            return
        self._host_reply(resp)

    def _wallet_schedule(self) -> None:
        """Wake the host when the next wallet order is due (a phone confirms, or
        an order's window closes)."""
        due = self.host.wallet_due_ms
        if due >= 0 and (self.wallet_tick_ms < 0 or due < self.wallet_tick_ms):
            self.wallet_tick_ms = due
            self.sched.at(max(due, self.clock.now_ms), self._wallet_tick, due)

    def _wallet_tick(self, due: int) -> None:
        if due != self.wallet_tick_ms:
            return  # superseded by an earlier tick, which scheduled the next one
        self.wallet_tick_ms = -1
        for txn, action in self.host.wallet_advance(self.clock.now_ms):
            rec: dict[str, Any] = {
                "action": action.action,
                "rc": action.rc,
                "rrn": action.rrn,
                "amount": action.amount,
                "mti": MTI_PURCHASE,
                "stan": txn.stan,
                "key": txn.idem_key,
                "detail": action.detail,
            }
            self.emit("host", rec)
        self._wallet_schedule()

    def _host_charge_again(self, req: Message) -> None:
        """host_double_charge: charge `req` once more, as a host that lost its
        idempotency record would. The twin goes through the host's own begin and
        finish under a key and STAN of its own (so the host's duplicate rules do not
        catch it) and is logged as the original request's; nothing is answered."""
        twin = sign(
            replace(
                req,
                idem_key=req.idem_key + HostDoubleCharge.TWIN_SUFFIX,
                stan=(req.stan + 500_000) % 1_000_000,
            ),
            self.mac_key,
        )
        started, action = self.host.begin(twin, self.clock.now_ms)
        if isinstance(started, Message):
            if action is not None:
                self._host_action(req, action)
            return
        _, action = self.host.finish(started, self.clock.now_ms)
        self._host_action(req, action)

    def _foreign_rrn(self, resp: Message) -> Message:
        """host_foreign_rrn: `resp` naming the latest other sale's RRN (one the host
        never issued when there is none), signed as the host signs."""
        rrn = next((r for r in reversed(self.host_rrns) if r != resp.rrn), "999999999999")
        return sign(replace(resp, rrn=rrn, mac=""), self.mac_key)

    def _host_crash(self, down_ms: int) -> None:
        self.host_epoch += 1
        self.host_down_until = self.clock.now_ms + down_ms
        self.emit("host_down", {"until_ms": self.host_down_until})

    def _host_action(self, req: Message, action: HostAction) -> None:
        rec: dict[str, Any] = {"action": action.action, "rc": action.rc}
        if action.rrn:
            rec["rrn"] = action.rrn
        if action.amount:
            rec["amount"] = action.amount
        rec["mti"] = req.mti
        rec["stan"] = req.stan
        if req.idem_key:
            rec["key"] = req.idem_key
        if action.rrn and req.mti == MTI_PURCHASE:
            n = (
                self.key_intent.get(req.idem_key)
                if req.idem_key
                else self.stan_intent.get(req.stan)
            )
            if n:
                self.rrn_intent[action.rrn] = n
            self.host_rrns.append(action.rrn)
        if req.batch_no:
            rec["batch_no"] = req.batch_no
        if action.detail:
            rec["detail"] = action.detail
        self.emit("host", rec)

    def _host_reply(self, resp: Message) -> None:
        self.emit("send", {"from": "host", "msg": self._md(resp)})
        self._link("to_terminal", resp, self._terminal_receive)
        if self.attacker.faults:
            self.attacker.on_answer(resp)
