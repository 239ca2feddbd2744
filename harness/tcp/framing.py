"""Length-prefixed frames on a TCP stream, sans-I/O.

The four length headers terminals, gateways and test tools use: `2b` (2-byte binary,
big-endian), `4b` (4-byte binary), `2a` / `4a` (2 or 4 ASCII digits). The length counts
the bytes after the header: an optional TPDU (5 bytes, `60` + destination + source
address) and the message. `FrameReader.feed` takes whatever a read returned (a frame
split over reads, or several frames in one) and gives back the complete messages;
a length over `max_bytes` (or a non-digit ASCII length) raises `FrameError`, and the
connection must be closed: the stream cannot be resynchronised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADERS = ("2b", "4b", "2a", "4a")
# The longest message either side accepts (the codecs' own limit).
MAX_FRAME_BYTES = 8192
TPDU_BYTES = 5


class FrameError(ValueError):
    """The stream is broken (bad or oversized length): close the connection."""


def header_size(header: str) -> int:
    if header not in HEADERS:
        raise ValueError(f"unknown length header {header!r} (one of {', '.join(HEADERS)})")
    return int(header[0])


def encode_frame(payload: bytes, header: str, tpdu: bytes = b"") -> bytes:
    """`payload` (after `tpdu`) with its length header."""
    body = tpdu + payload
    size = header_size(header)
    if len(body) >= (256**size if header.endswith("b") else 10**size):
        raise FrameError(f"frame of {len(body)} bytes does not fit a {header} header")
    if header.endswith("b"):
        return len(body).to_bytes(size, "big") + body
    return str(len(body)).zfill(size).encode("ascii") + body


def answer_tpdu(tpdu: bytes) -> bytes:
    """The TPDU of an answer: the request's with destination and source swapped."""
    if len(tpdu) != TPDU_BYTES:
        return tpdu
    return tpdu[:1] + tpdu[3:5] + tpdu[1:3]


@dataclass
class FrameReader:
    """Bytes in, messages out. `tpdu`: a TPDU precedes each message (returned apart)."""

    header: str
    tpdu: bool = False
    max_bytes: int = MAX_FRAME_BYTES
    _buf: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._size = header_size(self.header)
        self._binary = self.header.endswith("b")

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """`(tpdu, message)` for every frame completed by `data` (tpdu b"" if none)."""
        self._buf += data
        out = []
        while len(self._buf) >= self._size:
            length = self._length(bytes(self._buf[: self._size]))
            end = self._size + length
            if len(self._buf) < end:
                break
            body = bytes(self._buf[self._size : end])
            del self._buf[:end]
            if self.tpdu:
                if len(body) < TPDU_BYTES:
                    raise FrameError(f"frame of {len(body)} bytes has no room for its TPDU")
                out.append((body[:TPDU_BYTES], body[TPDU_BYTES:]))
            else:
                out.append((b"", body))
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buf)

    def _length(self, raw: bytes) -> int:
        if self._binary:
            length = int.from_bytes(raw, "big")
        elif raw.isdigit() and raw.isascii():
            length = int(raw)
        else:
            raise FrameError(f"length header {raw!r} is not {self._size} ASCII digits")
        limit = self.max_bytes + (TPDU_BYTES if self.tpdu else 0)
        if length > limit:
            raise FrameError(f"frame of {length} bytes is over the {limit}-byte limit")
        if length == 0:
            raise FrameError("frame of 0 bytes")
        return length
