"""The mock acquirer on a TCP listener: `posharness acquirer serve --listen tcp://H:P`.

The same `HostCore` as over MQTT (decode, authenticate, rate-limit per terminal,
idempotency, ledger, answers in the request's codec); only the transport differs:
length-prefixed frames (`framing.py`) on any number of connections. Each answer goes
back on the connection its request came on; a connection may carry several terminals'
requests and several requests at once, and answers are matched by the terminal as over
MQTT (terminal id, STAN, key), so they may come back in another order (a slow test card
answers after a quick one). A frame's terminal is the one it names (field 41); a frame
naming none is dropped.

Durability: every transaction is committed (SQLite WAL, synchronous FULL) before its
answer is written, so an answer never announces what a crash could undo. Group commit
as over MQTT (harness/mqtt/groupcommit.py): the requests read in one iteration of the
event loop, from any connection, share one transaction and one fsync, and their answers
are written after it. Bounds: frames of at most
`MAX_FRAME_BYTES`, `max_connections` connections, a connection idle for `idle_s` is
closed, a broken length header closes its connection, and reading pauses while a peer
does not read its answers (`drain`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from harness.mqtt import wire
from harness.mqtt.groupcommit import GroupCommit
from harness.mqtt.host_service import Deferred, HostCore, address_of, limiters
from harness.mqtt.hostdb import open_acquirer, provision
from harness.mqtt.ratelimit import RATE_PER_S

from .framing import FrameError, FrameReader, answer_tpdu, encode_frame
from .standard import Routed, StandardGateway, StandardTerminal

log = logging.getLogger("posharness.tcp.host")

IDLE_S = 300.0
MAX_CONNECTIONS = 1000
READ_BYTES = 65536


@dataclass(frozen=True)
class TcpOptions:
    host: str = "127.0.0.1"
    port: int = 8583
    header: str = "2b"
    tpdu: bool = False  # each frame carries a 5-byte TPDU (answered with addresses swapped)
    idle_s: float = IDLE_S
    max_connections: int = MAX_CONNECTIONS
    rate_limit_per_s: int = RATE_PER_S


def parse_listen(url: str) -> tuple[str, int]:
    """`tcp://HOST:PORT` -> (host, port); ValueError naming the problem."""
    if not url.startswith("tcp://"):
        raise ValueError(f"--listen {url!r}: expected tcp://HOST:PORT")
    host, sep, port = url[len("tcp://") :].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {url!r}: expected tcp://HOST:PORT with a port 0-65535")
    return host, int(port)


class TcpHost:
    """`HostCore` behind an asyncio TCP server. `async with TcpHost(db, opts) as h:`."""

    def __init__(
        self,
        db_path: str,
        opts: TcpOptions,
        standard: Mapping[str, StandardTerminal] | None = None,
    ) -> None:
        """`standard`: terminals speaking plain ISO 8583:1987 (standard.py)."""
        limiter, bad = limiters(opts.rate_limit_per_s)
        self.gateway = StandardGateway(standard) if standard else None
        if self.gateway is not None:
            provision(db_path, self.gateway.protocol_keys)
        self.core = HostCore(
            open_acquirer(db_path), group_commit=True, limiter=limiter, bad_limiter=bad
        )
        self.group = GroupCommit(self.core)
        self.opts = opts
        self.connections = 0
        self._server: asyncio.Server | None = None
        # Open connections: their handler tasks and writers (stop closes them).
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.opts.host, self.opts.port)

    async def stop(self) -> None:
        """Stop listening, answer what is handled (commit, fsync, write), close every
        connection, then the database."""
        if self._server is not None:
            self._server.close()
        self.group.flush()
        # Closing a connection ends its handler's read loop: no task is cancelled.
        for writer in self._handlers.values():
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.core.acquirer.close()

    async def __aenter__(self) -> TcpHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self.connections >= self.opts.max_connections:
            self.core.stats["connections_refused"] += 1
            writer.close()
            return
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        framer = FrameReader(self.opts.header, tpdu=self.opts.tpdu)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_BYTES), self.opts.idle_s)
                if not data:
                    break
                for tpdu, payload in framer.feed(data):
                    self._on_frame(writer, tpdu, payload)
                await writer.drain()  # back-pressure: no more reads while answers pile up
        except FrameError as exc:
            self.core.stats["broken_streams"] += 1
            log.warning("host: closing the connection from %s: %s", peer, exc)
        except TimeoutError:
            self.core.stats["idle_closed"] += 1
        except ConnectionError:
            pass
        finally:
            self.connections -= 1
            self._handlers.pop(task, None)
            writer.close()

    def _on_frame(self, writer: asyncio.StreamWriter, tpdu: bytes, payload: bytes) -> None:
        if self.gateway is not None:
            routed = self.gateway.route(payload, self.core.clock_ms())
            if routed is not None:
                self._on_standard(writer, tpdu, routed)
                return
        named = address_of(payload, wire.sniff_codec(payload))
        if named is None:
            self.core.stats["frames"] += 1
            self.core.stats["dropped"] += 1
            log.warning("host: dropped a frame naming no terminal (%d bytes)", len(payload))
            return
        self.group.open()
        out = self.core.handle(named.terminal_id, payload)
        if isinstance(out, Deferred):
            loop = asyncio.get_running_loop()
            loop.call_later(out.delay_ms / 1000, self._finish, writer, tpdu, out)
        elif out is not None:
            self._answer(writer, tpdu, out.payload)

    def _on_standard(self, writer: asyncio.StreamWriter, tpdu: bytes, routed: Routed) -> None:
        """A standard terminal's frame: refused at once, or through the core and back."""
        if not routed.payload:
            if routed.answer:
                self._write(writer, tpdu, routed.answer)
            return
        self.group.open()
        out = self.core.handle(routed.terminal.tid, routed.payload)
        if isinstance(out, Deferred):
            loop = asyncio.get_running_loop()
            loop.call_later(out.delay_ms / 1000, self._finish, writer, tpdu, out, routed)
        elif out is not None:
            self._write_standard(writer, tpdu, routed, out.payload)

    def _finish(
        self,
        writer: asyncio.StreamWriter,
        tpdu: bytes,
        deferred: Deferred,
        routed: Routed | None = None,
    ) -> None:
        self.group.open()
        out = self.core.finish(deferred)
        if out is None:
            return
        if routed is None:
            self._answer(writer, tpdu, out.payload)
        else:
            self._write_standard(writer, tpdu, routed, out.payload)

    def _write_standard(
        self, writer: asyncio.StreamWriter, tpdu: bytes, routed: Routed, reply: bytes
    ) -> None:
        assert self.gateway is not None
        answer = self.gateway.answer(routed, reply)
        if answer:
            self._answer(writer, tpdu, answer)

    def _answer(self, writer: asyncio.StreamWriter, tpdu: bytes, payload: bytes) -> None:
        """Write an answer of the host core's once its transaction is durable."""
        self.group.send(lambda: self._write(writer, tpdu, payload))

    def _write(self, writer: asyncio.StreamWriter, tpdu: bytes, payload: bytes) -> None:
        if writer.is_closing():
            self.core.stats["unsent"] += 1  # the peer left; its terminal resends
            return
        writer.write(encode_frame(payload, self.opts.header, answer_tpdu(tpdu)))


async def serve_forever(
    db_path: str,
    opts: TcpOptions,
    stopping: asyncio.Event,
    standard: Mapping[str, StandardTerminal] | None = None,
) -> None:
    """Serve until `stopping` is set; prints where it listens, then "ready"."""
    async with TcpHost(db_path, opts, standard) as host:
        tpdu = " with a TPDU" if opts.tpdu else ""
        print(
            f"acquirer: serving tcp://{opts.host}:{host.port} db={db_path} "
            f"(ISO 8583 or JSON frames, {opts.header} length header{tpdu})",
            flush=True,
        )
        for line in host.gateway.banner() if host.gateway is not None else ():
            print(f"acquirer: {line}", flush=True)
        print("ready", flush=True)
        await stopping.wait()
        if host.gateway is not None and host.gateway.stats:
            counts = ", ".join(f"{k} {n}" for k, n in sorted(host.gateway.stats.items()))
            unsigned = host.gateway.stats["unsigned_frames"]
            note = f" ({unsigned} UNSIGNED: no MAC was checked)" if unsigned else ""
            print(f"acquirer: standard terminals: {counts}{note}", flush=True)
