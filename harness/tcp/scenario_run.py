"""`posharness run --transport tcp`: the simulated world, its network hop made a TCP link.

The same construction as `run --transport mqtt` (harness/mqtt/scenario_run.py), with
the broker replaced by one loopback TCP connection: the terminal's side connects to
a listening socket that plays the host's side, and every message the fault plan lets
through crosses it as a length-prefixed ISO 8583 frame (2-byte binary header by
default, harness/tcp/framing.py), MAC in field 64. Requests travel terminal -> host
and answers host -> terminal on the same connection, as on a real acquirer link;
each side reads its frames, decodes them, and hands them to the world's
`_host_receive` / `_terminal_receive` on the loop. The people, the firmware, the host
logic, the faults and the invariants are the simulation's; the clock is scaled real
time (`ScaledClock`), so verdicts match the simulation's when timeouts are large next
to the loopback round trip times the scale.

Needs nothing installed: the link is Python's own asyncio streams.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acquirer.protocol import Message, ProtocolError
from harness.mqtt import wire
from harness.mqtt.scenario_run import TIME_SCALE_DEFAULT, RealTimeWorld, run_real_time
from harness.runner import RunResult, simulation_only
from scenarios.model import Scenario

from .framing import FrameError, FrameReader, encode_frame

# Seconds (wall) to wait for the loopback connection before giving up on the run.
CONNECT_TIMEOUT_S = 10.0
HEADER = "2b"


class TcpWorld(RealTimeWorld):
    """`World` whose network hop is one loopback TCP connection (see the module doc)."""

    def __init__(self, scenario: Scenario, factory: Any, **kwargs: Any) -> None:
        super().__init__(scenario, factory, **kwargs)
        self._server: asyncio.Server | None = None
        self._writers: dict[str, asyncio.StreamWriter] = {}  # "to_host" / "to_terminal"
        self._tasks: list[asyncio.Task[None]] = []
        self._host_side_ready = asyncio.Event()

    async def _connect(self) -> None:
        self._server = await asyncio.start_server(self._host_side, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            _nodelay(writer)
            self._writers["to_host"] = writer
            self._tasks.append(asyncio.create_task(self._read(reader, self._terminal_receive)))
            await self._host_side_ready.wait()

    async def _host_side(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if "to_terminal" in self._writers:  # one link only
            writer.close()
            return
        _nodelay(writer)
        self._writers["to_terminal"] = writer
        self._host_side_ready.set()
        await self._read(reader, self._host_receive)

    async def _read(self, reader: asyncio.StreamReader, deliver: Callable[[Message], None]) -> None:
        frames = FrameReader(HEADER)
        while True:
            data = await reader.read(65_536)
            if not data:
                return
            try:
                got = frames.feed(data)
            except FrameError as exc:
                self.frames_bad += 1
                self.emit("lost", {"to": "link", "reason": f"bad frame: {exc}"[:200]})
                return
            for _tpdu, payload in got:
                self.real_sched.arrived()
                try:
                    msg, _ = wire.decode(payload)
                except ProtocolError as exc:
                    self.frames_bad += 1
                    self.emit("lost", {"to": "link", "reason": f"undecodable: {exc}"[:200]})
                    continue
                self.sched.after(0, deliver, msg)

    async def _disconnect(self) -> None:
        for writer in self._writers.values():
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _transmit(
        self,
        direction: str,
        deliveries: list[tuple[int, Message]],
        deliver: Callable[[Message], None],
    ) -> None:
        # The fault plan was applied by World._link exactly as in the simulation;
        # the loopback round trip replaces the simulated latency and jitter.
        for extra_ms, m in deliveries:
            self.real_sched.sent()
            self.sched.after(extra_ms, self._write, (direction, m))

    def _write(self, arg: tuple[str, Message]) -> None:
        direction, msg = arg
        try:
            payload = wire.encode(msg, "iso8583")
        except ProtocolError:
            # A message ISO 8583 cannot carry (a firmware bug, or a corrupt fault):
            # the JSON encoding carries any Message, as over MQTT.
            payload = wire.encode(msg, "json")
        writer = self._writers.get(direction)
        if writer is None or writer.is_closing():
            self.real_sched.arrived()
            self.emit("lost", {"to": direction, "reason": "link closed", "msg": self._md(msg)})
            return
        writer.write(encode_frame(payload, HEADER))
        self.frames_sent += 1


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def run_scenario_tcp(
    scenario: Scenario,
    firmware: str | None = None,
    *,
    seed: int | None = None,
    time_scale: float = TIME_SCALE_DEFAULT,
    trace_dir: Path | None = None,
    trace_path: Path | None = None,
    host_db: str = ":memory:",
) -> RunResult:
    """`runner.run_scenario`, over a loopback TCP link in scaled real time."""
    simulation_only(scenario)
    return run_real_time(
        scenario,
        firmware,
        TcpWorld,
        "tcp",
        seed=seed,
        time_scale=time_scale,
        trace_dir=trace_dir,
        trace_path=trace_path,
        host_db=host_db,
    )
