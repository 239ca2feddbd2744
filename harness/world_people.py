"""The simulated world's people: the cashier's steps, customers who tap, scan, retry
and give up, and their phones (moved out of harness/world.py)."""

from __future__ import annotations

from typing import Any

from acquirer.protocol import Message
from faults.devices import (
    DoubleConfirm,
    DoubleTap,
    KeyingError,
    LateConfirm,
)
from scenarios.credits import CREDIT_ACTIONS
from scenarios.model import PAYMENT_ACTIONS, Step, step_to_dict
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    CancelPressed,
    CardPresented,
    CodeScanned,
    ConfirmPressed,
    Event,
    Outcome,
    PreauthKeyed,
    ReprintRequested,
)

from .world_model import (
    _INPUT_NAMES,
    RETAPS_MAX,
    STALE_SCREEN_AFTER_MS,
    IntentState,
)
from .world_state import WorldState


class PeopleMixin(WorldState):
    """See the module doc: a base of `World`, using its state."""

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
        if step.action in PAYMENT_ACTIONS:
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
        elif step.action in CREDIT_ACTIONS:
            self.credits.request(step)  # harness/credits.py

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
            preauth=step.action == "preauth",
            walked_in=bool(step.origin),
        )
        self.intents[n] = st
        self._bound_memory()
        self.active = st
        rec: dict[str, Any] = {"intent": n, "card": step.card, "amount": step.amount}
        if wallet:
            rec["wallet"] = True
        if st.preauth:
            rec["preauth"] = True
        if step.origin:
            rec["from"] = step.origin
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
        self._input(PreauthKeyed(amount) if st.preauth else AmountKeyed(amount))
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
        walks = p.next_terminal_on_failed and not st.walked_in and self.walk is not None
        if walks and outcome == Outcome.FAILED.value:
            self.walk(self, st)  # type: ignore[misc]
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
