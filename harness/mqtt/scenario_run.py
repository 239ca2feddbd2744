"""`posharness run --transport mqtt`: the simulated world, with its network hop made real.

Nothing about the people, the printer, the host logic, the faults or the invariants
changes: `MqttWorld` is the simulator's `World` with two parts swapped.

* The scheduler (`RealScheduler`) has the `Scheduler` interface (`at`, `after`, `run`,
  `executed`, `len`) but runs on an asyncio loop, and its clock (`ScaledClock`) reads
  real elapsed time multiplied by a time scale: at scale 50 a 15 s terminal timeout
  takes 300 ms of wall time. Every callback runs on the loop, one at a time, in
  (time, sequence) order, so the world code sees the same single-threaded world.
* The network hop (`_link`) applies the same fault plan as the simulation (drop,
  delay, duplicate, reorder, corrupt, partition: the same `NetworkFault.apply`), then
  publishes each surviving copy for real: ISO 8583 (the firmware's and host's MACs
  travel in field 64), QoS 1, through a private mosquitto on the terminal's
  ``posh/<tid>/req`` and ``posh/<tid>/resp`` topics, logged in as the terminal and as
  the acquirer (so the generated ACLs apply). The subscription handlers decode the
  frame and hand the message to `_host_receive` / `_terminal_receive` on the loop.

The simulated link adds `latency_ms` + jitter per hop; here the broker round trip is
the latency (about 1 ms of wall time, 50 ms of run time at scale 50). A run ends when
the scheduler is empty *and* no frame is in flight in the broker.

Verdicts match the simulation's when every timeout in the scenario is large compared
with the broker round trip times the scale; real time means jitter, so pick the scale
with margin (the default, 50, leaves a 15 s timeout 300 ms against ~1 ms of transit).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acquirer.protocol import Message, ProtocolError
from harness.engine import Scheduler, SimClock
from harness.runner import RunResult, run_with_world, simulation_only
from harness.world import World
from scenarios.model import Scenario

from . import wire
from .broker import PrivateBroker
from .session import Session

log = logging.getLogger("posharness.mqtt.run")

TIME_SCALE_DEFAULT = 50.0
# Seconds (wall) to wait for both MQTT connections before giving up on the run.
CONNECT_TIMEOUT_S = 10.0
# Seconds (wall) a published frame may stay in flight with nothing else to do before
# it counts as lost: on loopback a QoS 1 frame takes about a millisecond, so this only
# stops a run from waiting out the whole scenario for a frame the broker dropped.
INFLIGHT_TIMEOUT_S = 5.0
# Callbacks run back to back before the loop gets a turn for network I/O.
BURST_MAX = 64


class ScaledClock(SimClock):
    """Run time in integer ms: real elapsed time (the loop's clock) times `scale`.

    It is a `SimClock` so the trace and the world accept it; only `now_ms` differs.
    Before `start()` it reads 0, so set-up writes happen at time 0 as in a simulation.
    """

    __slots__ = ("_last_ms", "_loop", "_t0_s", "scale")

    def __init__(self, loop: asyncio.AbstractEventLoop, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"time scale must be > 0, got {scale}")
        self._loop = loop
        self.scale = scale
        self._t0_s = -1.0
        self._last_ms = 0

    def start(self) -> None:
        self._t0_s = self._loop.time()

    @property
    def now_ms(self) -> int:
        if self._t0_s < 0:
            return 0
        ms = int((self._loop.time() - self._t0_s) * 1000.0 * self.scale)
        # Monotonic by construction; kept explicit because traces must never go back.
        if ms > self._last_ms:
            self._last_ms = ms
        return self._last_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        raise AttributeError("a real clock cannot be set")

    def wall_s(self, run_ms: int) -> float:
        """Wall seconds that `run_ms` of run time take."""
        return run_ms / 1000.0 / self.scale


class RealScheduler(Scheduler):
    """The `Scheduler` interface on an asyncio loop: callbacks run when their time comes.

    `run` drives the loop until the queue is empty and no frame is in flight (True),
    or until `until_ms` / `events_max` stop it with work left (False), like the
    simulator's. Frames in flight are counted by `sent()` / `arrived()`.
    """

    __slots__ = ("_inflight", "_wake", "loop", "real_clock")

    def __init__(self, clock: ScaledClock, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(clock)
        self.real_clock = clock
        self.loop = loop
        self._inflight = 0
        self._wake: asyncio.Event | None = None

    def at(self, time_ms: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        super().at(time_ms, fn, arg)
        if self._wake is not None:
            self._wake.set()

    def sent(self) -> None:
        self._inflight += 1

    def arrived(self) -> None:
        self._inflight = max(0, self._inflight - 1)
        if self._wake is not None:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._queue) + self._inflight

    def drop_if_all(self, moot: Callable[[Callable[[Any], None], Any], bool]) -> bool:
        return not self._inflight and super().drop_if_all(moot)

    def run(self, until_ms: int, events_max: int) -> bool:
        return self.loop.run_until_complete(self._run(until_ms, events_max))

    async def _run(self, until_ms: int, events_max: int) -> bool:
        wake = self._wake = asyncio.Event()
        queue = self._queue
        clock = self.real_clock
        burst = 0
        try:
            while True:
                if self.executed >= events_max:
                    return False
                now = clock.now_ms
                if queue and queue[0][0] <= now:
                    if queue[0][0] > until_ms:
                        return False
                    _, _, fn, arg = heapq.heappop(queue)
                    self.executed += 1
                    fn(arg)
                    burst += 1
                    if burst >= BURST_MAX:
                        burst = 0
                        await asyncio.sleep(0)  # let frames in and out
                    continue
                burst = 0
                if not queue and not self._inflight:
                    return True
                if now >= until_ms:
                    return False
                due_ms = min(queue[0][0], until_ms) if queue else until_ms
                wait_s = clock.wall_s(due_ms - now)
                if not queue:
                    wait_s = min(wait_s, INFLIGHT_TIMEOUT_S)
                wake.clear()
                try:
                    async with asyncio.timeout(wait_s):
                        await wake.wait()
                except TimeoutError:
                    if not queue and self._inflight:
                        log.warning("%d frame(s) never arrived; counted lost", self._inflight)
                        self._inflight = 0
        finally:
            self._wake = None


class RealTimeWorld(World):
    """`World` on a `ScaledClock` and a `RealScheduler` over `loop`, whose network hop
    a subclass makes real (`_connect`, `_disconnect`, `_transmit`): MQTT here, TCP in
    harness/tcp/scenario_run.py."""

    def __init__(
        self,
        scenario: Scenario,
        factory: Any,
        *,
        loop: asyncio.AbstractEventLoop,
        seed: int | None = None,
        trace: Any = None,
        clock: SimClock | None = None,
        host_db: str = ":memory:",
        firmware_spec: str = "",
    ) -> None:
        if not isinstance(clock, ScaledClock):
            raise TypeError(f"{type(self).__name__} needs a ScaledClock")
        super().__init__(
            scenario,
            factory,
            seed=seed,
            trace=trace,
            clock=clock,
            host_db=host_db,
            firmware_spec=firmware_spec,
        )
        self.real_clock = clock
        self.real_sched = RealScheduler(clock, loop)
        self.sched = self.real_sched
        self.loop = loop
        self.frames_sent = 0
        self.frames_bad = 0

    def run(self) -> bool:
        self.loop.run_until_complete(self._connect())
        try:
            self.real_clock.start()
            return super().run()
        finally:
            self.loop.run_until_complete(self._disconnect())

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError


class MqttWorld(RealTimeWorld):
    """`World` whose network hop goes through a real MQTT broker (see the module doc)."""

    def __init__(
        self, scenario: Scenario, factory: Any, *, broker: PrivateBroker, **kwargs: Any
    ) -> None:
        super().__init__(scenario, factory, **kwargs)
        tid = self.tid
        self.req_topic = wire.topic(tid, "req")
        self.resp_topic = wire.topic(tid, "resp")
        self.terminal_session = Session(
            broker.address(tid),
            client_id=f"posharness-run-{tid}",
            subscriptions=[self.resp_topic],
            on_message=self._from_broker,
        )
        self.host_session = Session(
            broker.address("acquirer"),
            client_id="posharness-run-acquirer",
            subscriptions=[wire.topic("+", "req")],
            on_message=self._from_broker,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def _connect(self) -> None:
        for session in (self.host_session, self.terminal_session):
            self._tasks.append(asyncio.create_task(session.run()))
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self.host_session.connected.wait()
            await self.terminal_session.connected.wait()

    async def _disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _transmit(
        self,
        direction: str,
        deliveries: list[tuple[int, Message]],
        deliver: Callable[[Message], None],
    ) -> None:
        # The fault plan was applied by World._link exactly as in the simulation;
        # the broker's round trip replaces the simulated latency and jitter.
        topic = self.req_topic if direction == "to_host" else self.resp_topic
        for extra_ms, m in deliveries:
            # Counted in flight from now: a delayed copy keeps the run from ending.
            self.real_sched.sent()
            self.sched.after(extra_ms, self._publish, (topic, m))

    def _publish(self, arg: tuple[str, Message]) -> None:
        topic, msg = arg
        try:
            payload = wire.encode(msg, "iso8583")
        except ProtocolError:
            # A message ISO 8583 cannot carry (a firmware bug, or a corrupt fault):
            # the JSON encoding carries any Message.
            payload = wire.encode(msg, "json")
        session = self.host_session if topic == self.resp_topic else self.terminal_session
        if not session.publish(topic, payload):
            self.real_sched.arrived()
            self.emit("lost", {"to": topic, "reason": "not connected", "msg": self._md(msg)})
            return
        self.frames_sent += 1

    def _from_broker(self, topic: str, payload: bytes) -> None:
        self.real_sched.arrived()
        try:
            msg, _ = wire.decode(payload)
        except ProtocolError as exc:
            self.frames_bad += 1
            self.emit("lost", {"to": topic, "reason": f"undecodable: {exc}"[:200]})
            return
        deliver = self._host_receive if topic == self.req_topic else self._terminal_receive
        self.sched.after(0, deliver, msg)


def run_scenario_mqtt(
    scenario: Scenario,
    firmware: str | None = None,
    *,
    seed: int | None = None,
    time_scale: float = TIME_SCALE_DEFAULT,
    trace_dir: Path | None = None,
    trace_path: Path | None = None,
    host_db: str = ":memory:",
) -> RunResult:
    """`runner.run_scenario`, over a private mosquitto in scaled real time.

    Raises `broker.BrokerError` (with the install hint) when mosquitto is missing.
    """
    simulation_only(scenario)  # before starting a broker
    with PrivateBroker(terminal_users=(scenario.terminal.id,)) as broker:
        return run_real_time(
            scenario,
            firmware,
            functools.partial(MqttWorld, broker=broker),
            "mqtt",
            seed=seed,
            time_scale=time_scale,
            trace_dir=trace_dir,
            trace_path=trace_path,
            host_db=host_db,
        )


def run_real_time(
    scenario: Scenario,
    firmware: str | None,
    world_class: Callable[..., RealTimeWorld],
    transport: str,
    *,
    seed: int | None,
    time_scale: float,
    trace_dir: Path | None,
    trace_path: Path | None,
    host_db: str,
) -> RunResult:
    """`runner.run_with_world` with a `RealTimeWorld` on a fresh event loop and a
    `ScaledClock` (`world_class` is called as `RealTimeWorld` is, plus `loop=`)."""
    loop = asyncio.new_event_loop()
    try:
        clock = ScaledClock(loop, time_scale)

        def make_world(sc: Scenario, factory: Any, **kwargs: Any) -> World:
            return world_class(sc, factory, loop=loop, **kwargs)

        result = run_with_world(
            scenario,
            firmware,
            make_world,
            clock,
            seed=seed,
            trace_dir=trace_dir,
            trace_path=trace_path,
            host_db=host_db,
        )
    finally:
        loop.close()
    result.extra["transport"] = transport
    result.extra["time_scale"] = time_scale
    return result
