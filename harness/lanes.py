"""A world of several terminals: one clock, one host, one trace; a lane per terminal.

Each terminal is a `World` of its own (its firmware, journal, printer, cashier and
customers, its link to the host and the faults addressed to it) built on the
shared clock, scheduler, host and trace. Its trace records carry `term`, its name.
Nothing is shared that a real shop would not share: the card balances and the
host (its store, its crashes) are one; everything at a counter is its own.

Judging. Every invariant of one terminal is judged per terminal, from that
terminal's records and the host transactions its own requests made (a clone of a
terminal id shares the id, not the books). `one-terminal-per-charge` is judged
over all of them: no host charge (RRN) is claimed as approved at two terminals.
Two devices given one terminal id (a clone) share the host's settlement of that
id, so `batch-reconciles` is not judged for them.

Customers who walk. With `[people] next_terminal_on_failed`, a customer whose
sale ends FAILED (after any retries at that counter) walks to the next terminal
and pays there: a new intent, whose `intent` record names where it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from acquirer.host import Acquirer, HostTxn
from acquirer.protocol import Message
from scenarios.model import Scenario, Step, scenario_to_dict
from terminal.firmware import BatchCloseRequested

from .engine import EVENTS_MAX_DEFAULT, Scheduler, SimClock
from .invariants import Observations, Violation, check_all
from .trace import TRACE_VERSION, Record, Trace
from .world import RUN_TAIL_MS, STEPS_INLINE_MAX, FirmwareFactory, World, make_host
from .world_model import HostSite, IntentState, Lane

# RRNs remembered for `one-terminal-per-charge` (the oldest are forgotten first).
CLAIMS_KEPT_MAX = 50_000
# Whole-run violations every terminal sees alike are reported once.
_RUN_WIDE = ("ledger-balances",)


class Lanes:
    """One run of a scenario with several terminals (`Scenario.terminals`). Offers
    what the runner reads of a `World`: `host`, `sched`, `run`, `crashes`,
    `features`, `fw_seen`, `intents_started`."""

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
        factories: dict[str, FirmwareFactory] | None = None,
    ) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.clock = clock or SimClock()
        self.sched = Scheduler(self.clock)
        self.trace = trace or Trace(self.clock)
        self.firmware_spec = firmware_spec or scenario.firmware
        self.host: Acquirer = make_host(scenario, host_db)
        site = HostSite()
        first = scenario.lanes()[0].lane
        own = factories or {}
        # The terminals that ran a firmware of their own (the run record says so: a
        # replay must not replace them with the scenario's).
        self.own_firmware = {t.lane: t.firmware for t in scenario.lanes() if t.lane in own}
        # A load run's steps go into the trace one `step` record at a time.
        self.stream_steps = len(scenario.steps) > STEPS_INLINE_MAX
        self.lanes: list[World] = []
        for t in scenario.lanes():
            name = t.lane
            mine = [i for i, f in enumerate(scenario.faults) if (f.terminal or first) == name]
            sub = replace(
                scenario,
                terminal=t,
                terminals=(),
                steps=tuple(s for s in scenario.steps if (s.terminal or first) == name),
                faults=tuple(scenario.faults[i] for i in mine),
                firmware=t.firmware or scenario.firmware,
            )
            lane = World(
                sub,
                own.get(name, factory),
                seed=self.seed,
                trace=self.trace,
                clock=self.clock,
                firmware_spec=t.firmware or self.firmware_spec,
                lane=Lane(name, self.host, self.sched, site, mine),
            )
            lane.walk = self._walk
            lane.stream_steps = self.stream_steps
            lane.txn_emit = self._txn_emit
            self.lanes.append(lane)
        # Wallet orders: the customer's phone and the host's records of an order
        # belong to the terminal that took it.
        self.host.phone = self._phone

    # ------------------------------------------------------------ what runs read

    @property
    def crashes(self) -> int:
        return sum(w.crashes for w in self.lanes)

    @property
    def intents_started(self) -> int:
        return sum(w.intents_started for w in self.lanes)

    @property
    def fw_seen(self) -> bool:
        return any(w.fw_seen for w in self.lanes)

    @property
    def features(self) -> frozenset[str]:
        """What every terminal's firmware declares (a feature one lacks is missing)."""
        seen = [w.features for w in self.lanes if w.fw_seen]
        return frozenset.intersection(*seen) if seen else frozenset()

    # ------------------------------------------------------------------ running

    def run(self) -> bool:
        sc = self.sc
        rec: dict[str, object] = {
            "v": TRACE_VERSION,
            "name": sc.name,
            "seed": self.seed,
            "firmware": self.firmware_spec,
        }
        if self.own_firmware:
            rec["lane_firmware"] = self.own_firmware
        if self.stream_steps:
            rec["scenario"] = scenario_to_dict(replace(sc, steps=()))
            rec["steps_streamed"] = len(sc.steps)
        else:
            rec["scenario"] = scenario_to_dict(sc)
        self.trace.emit("run", rec)
        for w in self.lanes:
            w.start(emit_run=False)
        last_ms = sc.steps[-1].at_ms if sc.steps else 0
        queue_ms = max(w._queue_ms() for w in self.lanes)
        until_ms = sc.max_ms if sc.max_ms >= 0 else last_ms + RUN_TAIL_MS + queue_ms
        events_max = EVENTS_MAX_DEFAULT + 1_000 * len(sc.steps)
        quiet = self._run_until(until_ms, events_max)
        while quiet:
            stalled = [w for w in self.lanes if w.waiting and w.active and not w.active.final]
            if not stalled:
                break
            for w in stalled:
                assert w.active is not None
                w._give_up(w.active.intent)
            quiet = self._run_until(until_ms, events_max)
        if quiet and sc.close_batch:
            for w in self.lanes:
                if w.powered and w.fw is not None:
                    w.batch_closed_at_end = True
                    w._input(BatchCloseRequested())
            quiet = self._run_until(until_ms, events_max)
        for w in self.lanes:
            w.stuck = not quiet
        self.trace.emit(
            "end",
            {
                "quiet": quiet,
                "events": self.sched.executed,
                "pending": len(self.sched),
                "crashes": self.crashes,
            },
        )
        return quiet

    def _run_until(self, until_ms: int, events_max: int) -> bool:
        """Run the shared queue; True when it came to rest (see World._run_until)."""
        moot = self.lanes[0].stale_timer  # it judges a timer by the world it belongs to
        return self.sched.run(until_ms, events_max) or self.sched.drop_if_all(moot)

    def _owner(self, terminal_id: str, key: str) -> World:
        """The terminal a request (by its terminal id and idempotency key) came from:
        of two devices with one id (a clone), the one that sent that key."""
        same = [w for w in self.lanes if w.tid == terminal_id] or self.lanes
        return next((w for w in same if key and key in w.key_intent), same[0])

    def _phone(self, req: Message, confirm_ms: int) -> int:
        return self._owner(req.terminal_id, req.idem_key)._phone(req, confirm_ms)

    def _txn_emit(self, txn: HostTxn) -> Callable[[str, dict[str, Any]], int]:
        return self._owner(txn.terminal_id, txn.idem_key).emit

    def _walk(self, src: World, st: IntentState) -> None:
        """A customer leaves terminal `src` with a FAILED sale and pays at the next."""
        i = self.lanes.index(src)
        dst = self.lanes[(i + 1) % len(self.lanes)]
        if dst is src:
            return
        dst_name = dst.sc.terminal.lane
        src.emit("cashier", {"intent": st.intent, "action": "next-terminal", "to": dst_name})
        step = Step(
            at_ms=self.clock.now_ms + src.sc.people.retry_after_ms,
            action="scan" if st.wallet else "purchase",
            card=st.card,
            amount=st.amount,
            terminal=dst_name,
            origin=f"{src.sc.terminal.lane}:{st.intent}",
        )
        dst.inject(step)


class LaneJudge:
    """The invariants of a world of several terminals: an `Observations` per
    terminal, fed that terminal's records, and the checks across terminals."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.by_lane: dict[str, Observations] = {}
        for t in scenario.lanes():
            obs = Observations()
            obs.amount_max = t.amount_max
            obs.response_timeout_ms = t.response_timeout_ms
            obs.own_books_only = True
            obs.offline.configure(t.offline_floor, t.offline_max, t.offline_deadline_ms)
            self.by_lane[t.lane] = obs
        self.claims: dict[str, tuple[str, int]] = {}  # rrn -> first claim (terminal, seq)
        self.claimed_twice: set[tuple[str, str]] = set()  # (rrn, terminal) reported
        self.cross: list[Violation] = []
        ids = [t.id for t in scenario.lanes()]
        # Terminal ids two devices share (a clone): the host settles a terminal id,
        # so neither device's batch can reconcile, whatever its firmware does.
        self.cloned = {t.lane for t in scenario.lanes() if ids.count(t.id) > 1}

    @property
    def crashes(self) -> list[tuple[int, str]]:
        return sorted(c for obs in self.by_lane.values() for c in obs.crashes)

    def observe(self, rec: Record) -> None:
        term = rec.get("term")
        if term is None:
            for obs in self.by_lane.values():
                obs.observe(rec)
            return
        self.by_lane[term].observe(rec)
        kind = rec["kind"]
        if kind == "display" and rec["outcome"] == "approved" and rec.get("rrn"):
            self._claim(rec["rrn"], term, rec["seq"])
        elif kind == "print" and rec["status"] == "ok":
            receipt = rec["receipt"]
            if receipt.get("status") == "approved" and receipt.get("rrn"):
                self._claim(receipt["rrn"], term, rec["seq"])

    def _claim(self, rrn: str, term: str, seq: int) -> None:
        first = self.claims.get(rrn)
        if first is None:
            if len(self.claims) >= CLAIMS_KEPT_MAX:
                del self.claims[next(iter(self.claims))]
            self.claims[rrn] = (term, seq)
        elif first[0] != term and (rrn, term) not in self.claimed_twice and len(self.cross) < 100:
            self.claimed_twice.add((rrn, term))
            self.cross.append(
                Violation(
                    "one-terminal-per-charge",
                    f"terminal {term} claims the charge rrn {rrn} as approved, which "
                    f"terminal {first[0]} claimed first: one charge, two customers.",
                    0,
                    (rrn,),
                    (first[1], seq),
                )
            )

    def attach(self, host: Acquirer) -> None:
        for t in self.sc.lanes():
            self.by_lane[t.lane].attach(host, t.id, self.sc.expect.settle_within_ms)

    def evaluate(self, host: Acquirer) -> dict[str, list[Violation]]:
        """Every invariant's violations, each naming its terminal."""
        out: dict[str, list[Violation]] = {}
        said: set[tuple[str, str]] = set()
        for t in self.sc.lanes():
            got = check_all(self.by_lane[t.lane], host, t.id, self.sc.expect.settle_within_ms)
            for name, vs in got.items():
                kept = out.setdefault(name, [])
                if name == "batch-reconciles" and t.lane in self.cloned:
                    continue  # not judged: see `cloned`
                for v in vs:
                    if name in _RUN_WIDE or v.message.startswith("the run hit its limit"):
                        if (name, v.message) in said:
                            continue
                        said.add((name, v.message))
                        kept.append(v)
                    else:
                        kept.append(replace(v, message=f"terminal {t.lane}: {v.message}"))
        out.setdefault("one-terminal-per-charge", []).extend(self.cross)
        return out


def lane_factories(
    scenario: Scenario, load: Callable[[int, str], FirmwareFactory]
) -> dict[str, FirmwareFactory]:
    """The firmware of each terminal that names its own (`[[terminals]] firmware`),
    loaded by `load(index, spec)`."""
    return {t.lane: load(i, t.firmware) for i, t in enumerate(scenario.terminals) if t.firmware}


def fewer_terminals(sc: Scenario) -> list[Scenario]:
    """`sc` without one of its terminals, for each (with that terminal's steps and
    faults); a world left with one terminal becomes a scenario of one. Shrinking
    tries these first: a failure that needs one terminal reads best with one."""
    lanes = sc.terminals
    if not lanes:
        return []
    first = lanes[0].lane
    out: list[Scenario] = []
    for gone in reversed(lanes):
        left = tuple(t for t in lanes if t is not gone)
        steps = tuple(s for s in sc.steps if (s.terminal or first) != gone.lane)
        faults = tuple(f for f in sc.faults if (f.terminal or first) != gone.lane)
        if not steps:
            continue
        if len(left) > 1:
            lead = left[0].lane
            out.append(
                replace(
                    sc,
                    terminals=left,
                    steps=tuple(replace(s, terminal=s.terminal or lead) for s in steps),
                    faults=tuple(replace(f, terminal=f.terminal or lead) for f in faults),
                )
            )
            continue
        (only,) = left
        out.append(
            replace(
                sc,
                terminals=(),
                terminal=replace(only, name="", firmware=""),
                firmware=only.firmware or sc.firmware,
                steps=tuple(replace(s, terminal="") for s in steps),
                faults=tuple(replace(f, terminal="") for f in faults),
            )
        )
    return out
