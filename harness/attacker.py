"""The simulated attacker: carries out the attacker faults (faults/attacker.py) in a World.

Kept out of world.py, which only calls three hooks: `on_request` for every frame
the terminal sends, `on_answer` for every frame the host sends, and `start` to
schedule device swaps. Everything here is driven by the world's clock and fault
counters, so a run with attacker faults is as deterministic as any other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from acquirer.protocol import MTI_PURCHASE, Message
from faults.attacker import DeviceSwap, Replay, Splice
from faults.base import FaultState
from terminal.firmware import BatchCloseRequested

if TYPE_CHECKING:
    from harness.world import World

# A tampered copy: a currency no host accepts, shaped like a separator injection.
_TAMPERED_CURRENCY = "978|rc=00"


class Attacker:
    """The attacker faults of one run, and the frames the attacker has recorded."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.faults: list[FaultState] = []
        # The latest purchase request seen and the one before it with another key.
        self._current: Message | None = None
        self._previous: Message | None = None
        # Device swaps armed but waiting for the old device's batch to close cleanly.
        self._waiting: list[FaultState] = []

    def arm(self, s: FaultState) -> None:
        self.faults.append(s)
        w = self.w
        if isinstance(s.fault, DeviceSwap) and (w.powered or w.clock.now_ms > 0):
            w.sched.at(s.fault.at_ms, self._swap, s)  # armed during a run

    def start(self) -> None:
        for s in self.faults:
            if isinstance(s.fault, DeviceSwap):
                self.w.sched.at(s.fault.at_ms, self._swap, s)

    # -- hooks ------------------------------------------------------------------------

    def on_request(self, msg: Message) -> None:
        """The terminal sent `msg` (already stamped): record, replay or splice."""
        w = self.w
        now = w.clock.now_ms
        for s in self.faults:
            f = s.fault
            if isinstance(f, Replay):
                if f.leg == "request" and f.mti == msg.mti and s.hit(now):
                    w._fault(s, {"leg": f.leg, "mti": msg.mti, "stan": msg.stan})
                    w.sched.after(f.after_ms, w._host_receive, msg)
            elif isinstance(f, Splice) and msg.mti == MTI_PURCHASE and s.hit(now):
                self._splice(s, f, msg)
        if msg.mti == MTI_PURCHASE:
            current = self._current
            if current is not None and current.idem_key != msg.idem_key:
                self._previous = current
            self._current = msg

    def on_answer(self, resp: Message) -> None:
        """The host sent `resp` towards the terminal: record and maybe replay it."""
        w = self.w
        for s in self.faults:
            f = s.fault
            if (
                isinstance(f, Replay)
                and f.leg == "answer"
                and f.mti == resp.mti
                and s.hit(w.clock.now_ms)
            ):
                w._fault(s, {"leg": f.leg, "mti": resp.mti, "stan": resp.stan})
                w.sched.after(f.after_ms, w._terminal_receive, resp)

    # -- attacks ------------------------------------------------------------------------

    def _splice(self, s: FaultState, f: Splice, msg: Message) -> None:
        """Get the host to sign an answer to another request; pass it off as this one's."""
        w = self.w
        source = self._current
        if source is None or source.idem_key == msg.idem_key:
            source = self._previous
        if source is None or source.idem_key == msg.idem_key:
            source = replace(msg, currency=_TAMPERED_CURRENCY)
        answer = self._ask_host(source)
        forged = replace(answer, rc=f.rc) if f.rc and f.rc != answer.rc else answer
        w._fault(s, {"msg": w._md(forged)})
        w.sched.after(w.sc.network.latency_ms + f.delay_ms, w._terminal_receive, forged)

    def _ask_host(self, request: Message) -> Message:
        """The host's answer to a request the attacker sends itself (begin and finish
        at once; the host's actions are traced like any other)."""
        w = self.w
        now = w.clock.now_ms
        result, action = w.host.begin(request, now)
        if action is not None:
            w._host_action(request, action)
        if isinstance(result, Message):
            return result
        answer, action = w.host.finish(result, now)
        w._host_action(request, action)
        return answer

    def _swap(self, s: FaultState) -> None:
        """At `at_ms` the cashier closes the day on the old device; once its batch has
        closed cleanly (the journal holds only the `batch_closed` record, no sale in
        flight) the device is replaced. Nothing durable is lost but the counters, so
        every invariant must still hold: a firmware that fails here reused its keys."""
        w = self.w
        if not s.hit(w.clock.now_ms):
            return
        if self._clean():
            self._replace(s)
            return
        self._waiting.append(s)
        if w.powered:
            w._input(BatchCloseRequested())

    def on_trim(self) -> None:
        """The terminal trimmed its journal (a batch closed): a waiting swap may go."""
        if self._waiting and self._clean():
            s = self._waiting.pop(0)
            self.w.sched.after(0, self._replace, s)

    def _clean(self) -> bool:
        w = self.w
        journal = w.journal
        idle = w.active is None or bool(w.active.final)
        return idle and len(journal) == 1 and journal[0].get("type") == "batch_closed"

    def _replace(self, s: FaultState) -> None:
        w = self.w
        if not self._clean():
            self._waiting.append(s)  # a sale started in between: wait for the next close
            return
        w._fault(s, {"journal_lost": len(w.journal)})
        w._power_off("device swap")
        count = len(w.journal)
        w.journal.clear()
        w.emit("journal_trim", {"count": count, "left": 0})
        w.sched.after(s.fault.off_ms, w._power_on, None)  # type: ignore[attr-defined]
