"""A wire fault proxy between terminal and host topics, in the spirit of Toxiproxy.

Terminals publish to ``posh/<tid>/up`` and listen on ``posh/<tid>/down``; the
proxy republishes ``up`` to ``req`` (what the host reads) and ``resp`` to
``down``, applying the same fault data the simulator uses (faults/network.py):
drop, delay, duplicate, reorder, corrupt, partition, each with its trigger
(`nth`/`count` for "fail the first N", `from_ms`/`to_ms` windows measured from
the proxy's start). `BurstyLoss` adds Gilbert-Elliott bursty loss driven by a
seeded RNG, so the same seed loses the same messages in the same order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acquirer.protocol import Message, ProtocolError
from faults import Fault, FaultSpecError, FaultState, build_fault
from faults.base import PLAN_FAULTS_MAX
from faults.network import NetworkFault

from . import realclock, wire
from .session import Session
from .wire import BrokerAddress

log = logging.getLogger("posharness.mqtt.proxy")

PROXY_CLIENT_ID = "posharness-proxy"


@dataclass(frozen=True, slots=True)
class BurstyLoss:
    """Gilbert-Elliott loss: a good state (no loss) and a bad state (lose `loss_bad`).

    Each message first moves the chain: good -> bad with `p_enter`, bad -> good
    with `p_leave`; mean burst length is 1 / p_leave messages.
    """

    p_enter: float = 0.05
    p_leave: float = 0.5
    loss_bad: float = 1.0
    direction: str = "any"

    def check(self) -> None:
        for name in ("p_enter", "p_leave", "loss_bad"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultSpecError(f"{name}: must be between 0 and 1")
        if self.direction not in ("to_host", "to_terminal", "any"):
            raise FaultSpecError("direction: must be to_host, to_terminal or any")


class _BurstState:
    def __init__(self, spec: BurstyLoss, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.bad = False

    def lose(self, direction: str) -> bool:
        s = self.spec
        if s.direction not in ("any", direction):
            return False
        self.bad = self.rng.random() >= s.p_leave if self.bad else self.rng.random() < s.p_enter
        return self.bad and self.rng.random() < s.loss_bad


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Network faults (faults/network.py kinds) plus optional bursty loss, and a seed."""

    faults: tuple[Fault, ...] = ()
    bursty: BurstyLoss | None = None
    seed: int = 0


def load_plan(path: str | Path) -> FaultPlan:
    """Read a fault plan: `seed`, `[[faults]]` tables as in scenarios, `[bursty_loss]`."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return plan_from_dict(data)


def plan_from_dict(data: dict[str, Any]) -> FaultPlan:
    tables = data.get("faults", [])
    if not isinstance(tables, list) or len(tables) > PLAN_FAULTS_MAX:
        raise FaultSpecError(f"faults: must be a list of at most {PLAN_FAULTS_MAX} tables")
    out: list[Fault] = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict) or len(table) != 1:
            raise FaultSpecError(f"faults[{i}]: needs exactly one fault kind")
        ((kind, params),) = table.items()
        fault = build_fault(kind, params)
        if not isinstance(fault, NetworkFault):
            raise FaultSpecError(f"faults[{i}]: {kind} is not a wire fault")
        out.append(fault)
    bursty = None
    if "bursty_loss" in data:
        raw = data["bursty_loss"]
        if not isinstance(raw, dict):
            raise FaultSpecError("bursty_loss: must be a table")
        try:
            bursty = BurstyLoss(**raw)
        except TypeError as exc:
            raise FaultSpecError(f"bursty_loss: {exc}") from None
        bursty.check()
    seed = data.get("seed", 0)
    if type(seed) is not int:
        raise FaultSpecError("seed: expected an integer")
    return FaultPlan(tuple(out), bursty, seed)


def _flip(payload: bytes) -> bytes:
    """`payload` with one bit flipped in its middle (what a corrupt frame looks like)."""
    if not payload:
        return payload
    i = len(payload) // 2
    return payload[:i] + bytes([payload[i] ^ 0x01]) + payload[i + 1 :]


class FaultRouter:
    """Sans-I/O: what the fault plan does to each frame on the wire. Shared by the MQTT
    proxy (below) and the TCP proxy (harness/tcp/proxy.py)."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.states = [FaultState(f) for f in plan.faults]
        self.burst = (
            _BurstState(plan.bursty, random.Random(f"{plan.seed}:bursty"))
            if plan.bursty is not None
            else None
        )
        self.stats: Counter[str] = Counter()

    def route(
        self, direction: str, payload: bytes, now_ms: int
    ) -> tuple[list[tuple[int, bytes]], list[NetworkFault]]:
        """The deliveries `(extra_delay_ms, frame)` of a frame going `direction`
        ("to_host" or "to_terminal") at plan time `now_ms`, and the faults that hit it."""
        self.stats["frames"] += 1
        if self.burst is not None and self.burst.lose(direction):
            self.stats["bursty_loss"] += 1
            return [], []
        try:
            msg, codec = wire.decode(payload)
        except ProtocolError:
            return [(0, payload)], []  # not ours to judge: pass it on
        deliveries: list[tuple[int, Message]] = [(0, msg)]
        hits: list[NetworkFault] = []
        for s in self.states:
            f = s.fault
            assert isinstance(f, NetworkFault)
            if f.matches(direction, msg) and s.hit(now_ms):
                self.stats[f.KIND] += 1
                log.info("proxy: %s on %s %s stan %d", f.KIND, direction, msg.mti, msg.stan)
                deliveries = f.apply(deliveries)
                hits.append(f)
        out: list[tuple[int, bytes]] = []
        for extra_ms, m in deliveries:
            frame = payload
            if m is not msg:
                try:
                    frame = wire.encode(m, codec)
                except ProtocolError:
                    frame = _flip(payload)
            out.append((extra_ms, frame))
        return out, hits


class FaultProxy:
    """Moves frames up -> req and resp -> down through a fault plan."""

    def __init__(self, address: BrokerAddress, plan: FaultPlan, *, time_scale: float = 1.0) -> None:
        self.plan = plan
        self.time_scale = time_scale
        self.router = FaultRouter(plan)
        self.stats = self.router.stats
        self.session = Session(
            address,
            client_id=PROXY_CLIENT_ID,
            subscriptions=[wire.topic("+", "up"), wire.topic("+", "resp")],
            on_message=self._on_message,
        )
        self._t0_ms = 0.0

    def now_ms(self) -> int:
        """Milliseconds since the proxy started, in the plan's (scaled) time."""
        return int((realclock.loop_ms() - self._t0_ms) / self.time_scale)

    def _on_message(self, name: str, payload: bytes) -> None:
        parts = wire.split_topic(name)
        if parts is None:
            return
        tid, leg = parts
        if leg == "up":
            direction, target = "to_host", wire.topic(tid, "req")
        elif leg == "resp":
            direction, target = "to_terminal", wire.topic(tid, "down")
        else:
            return
        for extra_ms, frame in self.router.route(direction, payload, self.now_ms())[0]:
            self._deliver(extra_ms, target, frame)

    def _deliver(self, delay_ms: int, target: str, payload: bytes) -> None:
        if delay_ms <= 0:
            self.session.publish(target, payload)
        else:
            asyncio.get_running_loop().call_later(
                delay_ms / 1000 * self.time_scale, self.session.publish, target, payload
            )

    async def start(self) -> None:
        self._t0_ms = realclock.loop_ms()
        await self.session.start()

    async def stop(self) -> None:
        await self.session.stop()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def plan_of(faults: Sequence[Fault], bursty: BurstyLoss | None = None, seed: int = 0) -> FaultPlan:
    return FaultPlan(tuple(faults), bursty, seed)
