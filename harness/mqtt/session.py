"""One MQTT connection that survives broker restarts: connect, subscribe, dispatch, reconnect.

aiomqtt has no reconnect of its own: `Session.run` loops connect -> subscribe ->
read until the connection breaks -> back off -> connect again. Publishing never
blocks the caller: `publish` hands the message to paho (QoS 1; paho retransmits
until the PUBACK) and returns False when there is no connection, in which case
the message is lost exactly as a network would lose it, and the sender's own
retry logic (the firmware's timers) takes over.

aiomqtt owns the connection (connect, subscriptions, will, keepalive, noticing a
disconnect). Three things on the hot path go around it, each measured with a
fleet (bench/RESULTS.md): messages are handed from paho's callback to the
handler (`_deliver_directly`), reads are buffered (`BufferedSocket`), and
writes go out at the end of the loop iteration (`_write_soon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from . import realclock
from .wire import QOS, SOCKET_OPTIONS, BrokerAddress

log = logging.getLogger("posharness.mqtt")

OnMessage = Callable[[str, bytes], None]

# Reconnect backoff: first retry after 50 ms, doubling, at most 2 s apart.
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
# QoS 1 messages one connection may have in flight (paho's default of 20 would
# cap a fleet's throughput at 20 round trips).
INFLIGHT_MAX = 10_000
# Seconds a connection attempt may take before it counts as failed.
CONNECT_TIMEOUT_S = 5.0


class BufferedSocket:
    """paho's socket, read 64 KiB at a time instead of one MQTT packet in three recv calls.

    paho reads a packet as recv(1) for the type, recv(1) per length byte and
    recv(rest), then one more recv that fails with EAGAIN: four system calls
    (and an exception) per packet, about a third of a busy connection's CPU.
    This wrapper serves those small reads from one large read. `pending()` is
    the interface paho and aiomqtt already use for TLS sockets, whose decrypted
    bytes are buffered the same way: aiomqtt's reader keeps calling paho's
    `loop_read` while `pending()` is non-zero, so no buffered packet waits for
    the next readable event. Everything else is the socket's own.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    READ_BYTES = 65536

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        pos, buf = self._pos, self._buf
        if pos >= len(buf):
            buf = bytes(self._sock.recv(self.READ_BYTES))  # BlockingIOError passes through
            if not buf:
                return buf  # the peer closed the connection
            self._buf, pos = buf, 0
        end = pos + bufsize
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        return max(0, len(self._buf) - self._pos)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _deliver_directly(client: aiomqtt.Client, on_message: OnMessage) -> None:
    """Take messages from paho's callback instead of aiomqtt's queue.

    aiomqtt converts each message to its own type, queues it, and its iterator
    creates a Task and an `asyncio.wait` per message: about a third of the cost
    of a message on a busy connection. Here paho's `on_message` calls the
    handler directly, inside the same socket callback; aiomqtt still owns the
    connection (connect, subscriptions, will, keepalive, disconnect detection).
    The handler must not raise: paho would re-raise and aiomqtt drop the
    connection, so a failing handler is logged instead.
    """

    def deliver(_client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            on_message(message.topic, bytes(message.payload))
        except Exception:
            log.exception("mqtt: message handler failed on %s (dropped)", message.topic)

    client._client.on_message = deliver


def _buffer_reads(client: aiomqtt.Client) -> None:
    """Give a connected client's paho core a `BufferedSocket` (see there)."""
    core = client._client
    sock = core._sock
    if sock is not None and type(sock) is socket.socket:  # not TLS: it buffers already
        core._sock = BufferedSocket(sock)


def _write_soon(client: aiomqtt.Client) -> None:
    """Write queued packets at the end of the loop iteration, not via a write watch.

    aiomqtt answers paho's "I have packets to write" with `call_soon_threadsafe`
    (a byte through the loop's self-pipe) and an epoll write watch that is
    added, fires once and is removed: four system calls and two loop wake-ups
    per batch of writes, because paho may call it from a connect thread. After
    the connection is up paho only calls it from this loop, so here the packets
    are written by a plain `call_soon`; only when the kernel's buffer is full
    (paho still has packets) does a write watch wait for room. Install it only
    from the loop's own thread.
    """
    core = client._client
    loop = asyncio.get_running_loop()
    sock = core._sock
    if sock is None:
        return
    fd = sock.fileno()

    def write_now() -> None:
        try:
            core.loop_write()  # reports a lost connection to aiomqtt itself (on_disconnect)
        except Exception as exc:  # as aiomqtt's own write callback does
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)
            return
        if core.want_write():  # the kernel buffer is full: wait until it drains
            try:
                loop.add_writer(fd, write_now)
            except OSError as exc:  # the socket closed meanwhile (the broker died)
                if not client._disconnected.done():
                    client._disconnected.set_exception(exc)

    def register(_client: Any, _userdata: Any, _sock: Any) -> None:
        loop.call_soon(write_now)

    def unregister(_client: Any, _userdata: Any, _sock: Any) -> None:
        loop.remove_writer(fd)

    loop.remove_writer(fd)  # a watch aiomqtt may have left for the connect packets
    core.on_socket_register_write = register
    core.on_socket_unregister_write = unregister
    if core.want_write():
        loop.call_soon(write_now)


class Session:
    """A supervised MQTT connection. Run `run()` as a task; cancel it to stop."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: OnMessage,
        persistent: bool = False,
        will: tuple[str, bytes] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.persistent = persistent
        self.will = will
        self.on_connect = on_connect
        self.connected = asyncio.Event()
        self.connects = 0
        self.published = 0
        self.lost = 0
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the connection in a background task; return once connected."""
        self._task = asyncio.create_task(self.run())
        await self.connected.wait()

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Queue `payload` on `topic` with QoS 1. False (and counted lost) when offline."""
        client = self._client
        if client is None:
            self.lost += 1
            return False
        # aiomqtt's own publish awaits the PUBACK; handing the message straight to
        # paho lets one connection keep thousands in flight (paho still retransmits).
        info = client._client.publish(topic, payload, QOS, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.lost += 1
            return False
        self.published += 1
        return True

    async def run(self) -> None:
        """Connect, subscribe, dispatch; reconnect with backoff whenever the link breaks."""
        backoff_s = BACKOFF_FIRST_S
        a = self.address
        will = aiomqtt.Will(self.will[0], self.will[1], QOS, True) if self.will else None
        while True:
            client = aiomqtt.Client(
                a.host,
                a.port,
                username=a.username,
                password=a.password,
                identifier=self.client_id,
                clean_session=not self.persistent,
                protocol=aiomqtt.ProtocolVersion.V311,
                will=will,
                keepalive=10,
                timeout=CONNECT_TIMEOUT_S,
                max_inflight_messages=INFLIGHT_MAX,
                socket_options=SOCKET_OPTIONS,
            )
            try:
                async with client:
                    _buffer_reads(client)
                    _write_soon(client)
                    # Publishing works from here on: a persistent session's queued
                    # messages arrive right after the CONNACK, before our SUBSCRIBE is
                    # answered, and are handled (and answered) at once.
                    self._client = client
                    _deliver_directly(client, self.on_message)
                    for sub in self.subscriptions:
                        await client.subscribe(sub, qos=QOS)
                    self.connected.set()
                    self.connects += 1
                    backoff_s = BACKOFF_FIRST_S
                    if self.on_connect is not None:
                        self.on_connect()
                    # Messages arrive through `_deliver_directly`; this loop only
                    # waits for the connection to end (it raises MqttError then).
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, (bytes, bytearray)):
                            payload = b"" if payload is None else str(payload).encode()
                        self.on_message(message.topic.value, bytes(payload))
            except aiomqtt.MqttError as exc:
                log.info("mqtt %s: connection lost (%s); retrying", self.client_id, exc)
            finally:
                self.connected.clear()
                self._client = None
            await realclock.pause(backoff_s)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
