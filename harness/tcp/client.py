"""Terminals on a TCP connection to a host: `posharness terminal run --host tcp://H:P`.

`TcpTerminalClient` is `TerminalClient` (harness/mqtt/terminal_driver.py) for TCP:
the same `TerminalDriver`s (firmware, journal, timers, group commit) are given a
`publish` that writes a length-prefixed frame, and every answer frame is handed to the
driver of the terminal it names (field 41), so one connection carries many terminals.
The connection is kept up: after a loss or a refused connect it is retried with
backoff (50 ms doubling to 2 s); while it is down `publish` returns False (the frame is
counted lost, and the firmware's timers resend, exactly as after a lost MQTT frame).

A connection can die without either end being told (a half-open connection: a NAT or
firewall dropped it, the host's machine lost power). With `silence_s`, a connection on
which a frame was written and then nothing at all was read for `silence_s` is given up
and a new one made; the firmware's own resends and reversals then go out on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from acquirer.protocol import ProtocolError
from harness.mqtt import realclock, wire

from .framing import FrameError, FrameReader, encode_frame

if TYPE_CHECKING:
    from harness.mqtt.terminal_driver import TerminalDriver

    from .standard_host import StandardHostLink

log = logging.getLogger("posharness.tcp.terminal")

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 2.0
READ_BYTES = 65536


class TcpTerminalClient:
    """Many terminal drivers sharing one TCP connection to a host."""

    def __init__(
        self,
        host: str,
        port: int,
        header: str = "2b",
        *,
        silence_s: float | None = None,
        link: StandardHostLink | None = None,
    ) -> None:
        """`link`: the host speaks plain ISO 8583:1987 (standard_host.py)."""
        self.host, self.port, self.header = host, port, header
        self.link = link
        self.silence_s = silence_s
        # Loop time of the first frame written since anything was last read (or None).
        self._unanswered_since: float | None = None
        self.silent_drops = 0
        self.drivers: dict[str, TerminalDriver] = {}
        self.connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self.lost = 0
        self.published = 0
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    def add(
        self, driver_factory: Callable[[Callable[[bytes], bool]], TerminalDriver]
    ) -> TerminalDriver:
        """Create a driver bound to this connection (call before `start`)."""
        driver = driver_factory(self._publish)
        self.drivers[driver.tid] = driver
        return driver

    def _publish(self, payload: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            self.lost += 1
            return False
        if self.link is not None:
            plain = self.link.outgoing(payload)
            if plain is None:
                self.lost += 1  # no plain form (a status inquiry): the firmware times out
                return False
            payload = plain
        writer.write(encode_frame(payload, self.header))
        self.published += 1
        if self._unanswered_since is None:
            self._unanswered_since = realclock.loop_ms()
        return True

    async def wait_disconnected(self) -> None:
        """Return once the connection is down (at once if it is)."""
        await self._disconnected.wait()

    async def start(self) -> None:
        """Connect (retrying with backoff); returns once connected."""
        self._task = asyncio.create_task(self._run())
        await self.connected.wait()

    async def stop(self) -> None:
        for driver in self.drivers.values():
            driver.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> TcpTerminalClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                log.warning("terminal: cannot connect to %s:%d: %s", self.host, self.port, exc)
                await realclock.pause(backoff_s)
                backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
                continue
            backoff_s = BACKOFF_FIRST_S
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._writer = writer
            self._unanswered_since = None
            self._disconnected.clear()
            self.connected.set()
            watchdog = asyncio.create_task(self._watch(writer)) if self.silence_s else None
            try:
                await self._read(reader)
            except (FrameError, ConnectionError) as exc:
                log.warning("terminal: connection to the host lost: %s", exc)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                self._writer = None
                self.connected.clear()
                self._disconnected.set()
                writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = FrameReader(self.header)
        while data := await reader.read(READ_BYTES):
            self._unanswered_since = None
            for _, frame in framer.feed(data):
                payload = frame if self.link is None else self.link.incoming(frame)
                if payload is None:
                    continue
                driver = self._driver_for(payload)
                if driver is not None:
                    driver.receive(payload)

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        """Give up `writer`'s connection once a frame written on it has met `silence_s`
        of silence (nothing read since)."""
        assert self.silence_s is not None
        while not writer.is_closing():
            await realclock.pause(self.silence_s / 4)
            since = self._unanswered_since
            if since is not None and realclock.loop_ms() - since >= self.silence_s * 1000:
                self.silent_drops += 1
                log.warning(
                    "terminal: nothing read from %s:%d for %.1f s after a request: "
                    "reconnecting (a half-open connection?)",
                    self.host, self.port, self.silence_s,
                )  # fmt: skip
                writer.transport.abort()
                return

    def _driver_for(self, payload: bytes) -> TerminalDriver | None:
        """The driver of the terminal an answer names (the only one, if one)."""
        if len(self.drivers) == 1:
            return next(iter(self.drivers.values()))  # it judges the frame itself
        try:
            named = wire.decode(payload)[0].terminal_id
        except ProtocolError:
            return None  # no terminal to give it to: as a malformed frame on a topic
        return self.drivers.get(named)
