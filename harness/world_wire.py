"""The simulated world's network and host: messages on the link through the fault
plan, attribution of requests to intents, and the mock acquirer with its own faults
(moved out of harness/world.py). Real transports override `_transmit` only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from acquirer.host import HostAction, Ticket
from acquirer.protocol import (
    MTI_ADVICE,
    MTI_PREAUTH,
    MTI_PREAUTH_RESP,
    MTI_PURCHASE,
    MTI_PURCHASE_RESP,
    PROC_REFUND,
    Message,
    response_mti,
    sign,
    stamp,
)
from faults.base import FaultState
from faults.host import (
    HostCrash,
    HostDoubleCharge,
    HostForeignRrn,
    HostLoseReversal,
    RcBurst,
    SlowHost,
)
from faults.network import Forge, NetworkFault, Partition
from terminal.firmware import (
    MessageReceived,
)

from .world_model import (
    ATTRIBUTION_WINDOW,
    INTENTS_KEPT,
)
from .world_state import WorldState

# Requests that start a customer's payment (a sale, a pre-authorisation).
_SALE_MTIS = (MTI_PURCHASE, MTI_PREAUTH)
_SALE_ANSWER_MTIS = (MTI_PURCHASE_RESP, MTI_PREAUTH_RESP)
# Requests whose host action is a sale's charge (or hold), online or uploaded offline.
_CHARGE_MTIS = (MTI_PURCHASE, MTI_ADVICE, MTI_PREAUTH)


class WireMixin(WorldState):
    """See the module doc: a base of `World`, using its state."""

    # ------------------------------------------------------------------ network

    def _bound_memory(self) -> None:
        """Forget the oldest attribution entries and finished intents beyond a
        window: a long run must not grow without limit. A message naming a key
        older than the window is attributed to the intent in progress."""
        tables: tuple[dict[Any, Any], ...] = (
            self.key_intent,
            self.stan_intent,
            self.rrn_intent,
            self.receipt_rrn,
            self.completed_shown,
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
        if msg.mti in _SALE_MTIS and msg.processing_code != PROC_REFUND:
            rec["intent"] = self._attribute(msg)  # a refund is no customer's purchase
        self.emit("send", rec)
        self._link("to_host", msg, self._host_receive)
        if self.attacker.faults:
            self.attacker.on_request(msg)
        if msg.mti in _SALE_MTIS:
            for s in self.f_forge:
                if s.hit(self.clock.now_ms):
                    f: Forge = s.fault  # type: ignore[assignment]
                    forged = replace(
                        msg,
                        mti=response_mti(msg.mti),
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
        if msg.mti in _SALE_ANSWER_MTIS:
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
        if now < self.site.down_until:
            self.emit("lost", {"to": "host", "reason": "host is down", "msg": self._md(msg)})
            return
        if 0 <= self.host.wallet_due_ms <= now:
            self._wallet_tick(self.site.wallet_tick_ms)  # phones first: the same moment
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
            (result, crash, self.site.epoch, twice, foreign),
        )

    def _host_finish(self, arg: tuple[Ticket, HostCrash | None, int, bool, bool]) -> None:
        ticket, crash, epoch, twice, foreign = arg
        if epoch != self.site.epoch:
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
        if due >= 0 and (self.site.wallet_tick_ms < 0 or due < self.site.wallet_tick_ms):
            self.site.wallet_tick_ms = due
            self.sched.at(max(due, self.clock.now_ms), self._wallet_tick, due)

    def _wallet_tick(self, due: int) -> None:
        if due != self.site.wallet_tick_ms:
            return  # superseded by an earlier tick, which scheduled the next one
        self.site.wallet_tick_ms = -1
        for txn, action in self.host.wallet_advance(self.clock.now_ms):
            emit = self.emit if self.txn_emit is None else self.txn_emit(txn)
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
            emit("host", rec)
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
        self.site.epoch += 1
        self.site.down_until = self.clock.now_ms + down_ms
        self.emit("host_down", {"until_ms": self.site.down_until})

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
        # (A completion's or tip's 0220 names another sale: not a sale's charge.)
        if action.rrn and req.mti in _CHARGE_MTIS and not (req.mti == MTI_ADVICE and req.orig_key):
            # A sale's charge, online or uploaded after an offline approval: a display
            # naming its RRN (e.g. "last sale approved" at boot) belongs to that sale.
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
