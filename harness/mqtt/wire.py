"""The wire: topic scheme, codecs, frame limits, broker URLs and socket options.

Topics (one tree per terminal id, `posh/<tid>/...`):

* ``posh/<tid>/req``       terminal -> host requests (the host subscribes ``posh/+/req``)
* ``posh/<tid>/resp``      host -> terminal responses
* ``posh/<tid>/up``        terminal -> fault proxy (only when a proxy sits in between)
* ``posh/<tid>/down``      fault proxy -> terminal (only when a proxy sits in between)
* ``posh/<tid>/presence``  retained "online" / "offline" (the terminal's last will)

Codec: ISO 8583 (acquirer.iso8583) or compact JSON (acquirer.iso8583.to_json),
chosen per connection by the sender. The host tells them apart by the first
byte (an ISO 8583 frame starts with the ASCII digits of its MTI, a JSON frame
with "{") and answers in the codec of the request. QoS 1 both ways.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from acquirer import iso8583
from acquirer.protocol import Message, ProtocolError

Codec = Literal["iso8583", "json"]
CODECS: tuple[Codec, ...] = ("iso8583", "json")

# Largest payload either side accepts (the codec's own limit); longer is dropped unread.
FRAME_MAX_BYTES = iso8583.FRAME_MAX_BYTES
TOPIC_ROOT = "posh"
QOS = 1
PRESENCE_ONLINE = b"online"
PRESENCE_OFFLINE = b"offline"

# Without TCP_NODELAY every request/response round trip waits for Nagle's
# algorithm and delayed ACKs (about 88 ms measured on this machine).
SOCKET_OPTIONS: tuple[tuple[int, int, int], ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def topic(tid: str, leg: str) -> str:
    """`posh/<tid>/<leg>`; `leg` is req, resp, up, down or presence."""
    return f"{TOPIC_ROOT}/{tid}/{leg}"


def split_topic(name: str) -> tuple[str, str] | None:
    """(tid, leg) of a `posh/<tid>/<leg>` topic, or None for anything else."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or not parts[1]:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class TerminalTopics:
    """Where one terminal publishes and listens: direct to the host, or via a proxy."""

    publish: str
    listen: str
    presence: str

    @staticmethod
    def for_terminal(tid: str, via_proxy: bool = False) -> TerminalTopics:
        if via_proxy:
            return TerminalTopics(topic(tid, "up"), topic(tid, "down"), topic(tid, "presence"))
        return TerminalTopics(topic(tid, "req"), topic(tid, "resp"), topic(tid, "presence"))


def sniff_codec(payload: bytes) -> Codec:
    """The codec a frame was written in: JSON starts with "{", ISO 8583 with digits."""
    return "json" if payload[:1] == b"{" else "iso8583"


def encode(msg: Message, codec: Codec) -> bytes:
    """`msg` in `codec`. Raises ProtocolError if the wire cannot carry it."""
    if codec == "json":
        data = iso8583.to_json(msg)
        if len(data) > FRAME_MAX_BYTES:
            raise ProtocolError("frame too large")
        return data
    return iso8583.encode(msg)


def decode(payload: bytes) -> tuple[Message, Codec]:
    """The message in `payload` and its codec. Raises ProtocolError on anything malformed."""
    if len(payload) > FRAME_MAX_BYTES:
        raise ProtocolError("frame too large")
    codec = sniff_codec(payload)
    if codec == "json":
        return iso8583.from_json(payload), codec
    return iso8583.decode(payload), codec


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens and how to log in (`mqtt://user:pass@host:port`)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @staticmethod
    def parse(url: str) -> BrokerAddress:
        """Parse `mqtt://[user[:pass]@]host[:port]`, or `env:NAME` for a URL held in the
        environment variable NAME (so a password never shows on a command line, where
        every local user can read it in /proc). Raises ValueError on anything else."""
        if url.startswith("env:"):
            name = url[4:]
            value = os.environ.get(name)
            if not name or value is None:
                raise ValueError(f"broker URL {url!r}: environment variable {name!r} is not set")
            url = value
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"broker URL {url!r}: scheme must be mqtt://")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r}: no host")
        return BrokerAddress(
            parts.hostname,
            parts.port or 1883,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )

    def with_login(self, username: str | None, password: str | None) -> BrokerAddress:
        return BrokerAddress(self.host, self.port, username, password)

    def url(self, show_password: bool = False) -> str:
        login = ""
        if self.username:
            secret = f":{self.password}" if self.password and show_password else ""
            login = f"{self.username}{secret}@"
        return f"mqtt://{login}{self.host}:{self.port}"
