"""A wire fault proxy for TCP links: between terminals and a TCP host, frame by frame.

`TcpFaultProxy` listens on a loopback port; every connection accepted there gets a
connection of its own to the host, and each length-prefixed frame crossing either way
goes through the same fault data as the simulation and the MQTT proxy
(`harness.mqtt.proxy.FaultRouter`: drop, delay, duplicate, reorder, corrupt,
partition, bursty loss), plus what only a connection can do (faults/network.py):

* ``reset``: both sides of the connection are reset (RST), the frame lost;
* ``half_open``: the connection goes silent, neither side told: the proxy reads and
  forwards nothing either way for ``hold_ms``, then closes both sides;
* ``slow_reader``: the receiving side stops reading for ``pause_ms``; the sender's
  writes back up, and nothing behind the frame overtakes it.

The proxy works at frame level, like an ISO 8583 switch between terminal and host: a
delayed or held frame (delay, reorder) can be overtaken by the frames behind it on the
same connection. Plan time runs from the proxy's start, scaled by `time_scale`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import Counter

from faults.network import HalfOpen, NetworkFault, Reset, SlowReader
from harness.mqtt import realclock
from harness.mqtt.proxy import FaultPlan, FaultRouter

from .framing import FrameError, FrameReader, encode_frame

log = logging.getLogger("posharness.tcp.proxy")

READ_BYTES = 65536


class _Link:
    """One proxied connection: the terminal's side and the host's side."""

    def __init__(self, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.down, self.up = down, up
        self.silent = False
        self.closed = asyncio.Event()

    def reset(self) -> None:
        """RST both ways: SO_LINGER 0, then abort."""
        for writer in (self.down, self.up):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.closed.set()

    def close(self) -> None:
        for writer in (self.down, self.up):
            writer.close()
        self.closed.set()


class TcpFaultProxy:
    """`async with TcpFaultProxy((host, port), plan) as proxy:` then connect to `proxy.port`."""

    def __init__(
        self,
        upstream: tuple[str, int],
        plan: FaultPlan,
        *,
        header: str = "2b",
        tpdu: bool = False,
        time_scale: float = 1.0,
    ) -> None:
        self.upstream = upstream
        self.header, self.tpdu = header, tpdu
        self.time_scale = time_scale
        self.router = FaultRouter(plan)
        self.stats: Counter[str] = self.router.stats
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._t0_ms = 0.0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def now_ms(self) -> int:
        """Milliseconds since the proxy started, in the plan's (scaled) time."""
        return int((realclock.loop_ms() - self._t0_ms) / self.time_scale)

    async def start(self) -> None:
        self._t0_ms = realclock.loop_ms()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpFaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats["upstream_refused"] += 1
            down_w.close()
            return
        for w in (down_w, up_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(down_w, up_w)
        self._links.add(link)
        self.stats["connections"] += 1
        pumps = {
            asyncio.create_task(self._pump(link, down_r, up_w, "to_host")),
            asyncio.create_task(self._pump(link, up_r, down_w, "to_terminal")),
        }
        self._tasks |= pumps
        try:
            # Until one side closes (then the other is closed) or a fault ends the link.
            done_one = asyncio.create_task(link.closed.wait())
            await asyncio.wait({*pumps, done_one}, return_when=asyncio.FIRST_COMPLETED)
            if not link.silent:
                link.close()
            await link.closed.wait()
            done_one.cancel()
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, done_one, return_exceptions=True)
        finally:
            self._tasks -= pumps
            self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        framer = FrameReader(self.header, tpdu=self.tpdu)
        try:
            while data := await reader.read(READ_BYTES):
                if link.silent:
                    break  # half-open: read nothing more
                for tpdu, payload in framer.feed(data):
                    if link.silent or link.closed.is_set():
                        break
                    await self._frame(link, writer, direction, tpdu, payload)
                if not link.silent and not writer.is_closing():
                    await writer.drain()  # back-pressure: read no more than is written
        except (FrameError, ConnectionError):
            pass
        if link.silent:
            await link.closed.wait()

    async def _frame(
        self,
        link: _Link,
        writer: asyncio.StreamWriter,
        direction: str,
        tpdu: bytes,
        payload: bytes,
    ) -> None:
        deliveries, hits = self.router.route(direction, payload, self.now_ms())
        for fault in hits:
            if isinstance(fault, Reset):
                link.reset()
                return
            if isinstance(fault, HalfOpen):
                self._go_silent(link, fault)
                return
        pause_ms = max((f.pause_ms for f in hits if isinstance(f, SlowReader)), default=0)
        if pause_ms:
            # Stream order: this pump reads nothing more until the pause is over.
            await realclock.pause(pause_ms / 1000 * self.time_scale)
            deliveries = [(max(0, d - pause_ms), f) for d, f in deliveries]
        for delay_ms, frame in deliveries:
            out = encode_frame(frame, self.header, tpdu)
            if delay_ms <= 0:
                self._write(writer, out)
            else:
                asyncio.get_running_loop().call_later(
                    delay_ms / 1000 * self.time_scale, self._write, writer, out
                )

    def _go_silent(self, link: _Link, fault: NetworkFault) -> None:
        assert isinstance(fault, HalfOpen)
        link.silent = True
        hold_s = fault.hold_ms / 1000 * self.time_scale
        asyncio.get_running_loop().call_later(hold_s, link.close)

    @staticmethod
    def _write(writer: asyncio.StreamWriter, out: bytes) -> None:
        if not writer.is_closing():
            writer.write(out)
