"""The trace: every observable thing in a run, one record each, in order.

A record is a flat dict `{"seq": n, "t_ms": t, "kind": k, ...}`. Records stream to
observers (the invariant checkers) as they happen and, when asked, to a JSON-lines
file written through structlog. Nothing holds the whole trace in memory.

Byte-identical output for the same scenario and seed follows from three rules:
record keys are inserted in a fixed order, JSON is rendered with fixed separators
and no timestamps from the wall clock are ever added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any

import structlog

from scenarios.files import FileRefused, open_regular

from .engine import SimClock

TRACE_VERSION = 1

Record = dict[str, Any]
Observer = Callable[[Record], None]

# One trace line longer than this is refused by readers: nothing a run writes comes
# close (a batch upload of 10,000 items is about 300 kB).
LINE_BYTES_MAX = 4 * 1024 * 1024


# Compact, key order as inserted, UTF-8 as is: the same record gives the same bytes.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# Lines are buffered and written in blocks: a trace of a million purchases is
# about 20 million lines, and a flush per line would cost more than the run.
WRITE_BUFFER_BYTES = 1 << 20


class TraceWriter:
    """Renders records with structlog's processor chain (JSONRenderer at the end)
    and writes them as JSON lines to one file.

    The chain is the structlog part: users who want extra processors (say, one
    that drops PANs) pass them in `processors`, and they run in order before
    rendering. The BoundLogger layer is skipped on purpose: it copies a context
    dict per call and its WriteLogger flushes per line, which together tripled
    the cost of a traced run; records are already complete dicts.
    """

    def __init__(self, path: Path, processors: list[Any] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open(
            "w", encoding="utf-8", newline="\n", buffering=WRITE_BUFFER_BYTES
        )
        self._chain = [*(processors or []), structlog.processors.JSONRenderer(serializer=_encode)]
        self._write = self._file.write

    def write(self, rec: Record) -> None:
        out: Any = rec
        for proc in self._chain:
            out = proc(None, "trace", out)
        self._write(out)
        self._write("\n")

    def close(self) -> None:
        self._file.close()


def _encode(obj: Any, **_: Any) -> str:
    return _ENCODER.encode(obj)


class Trace:
    """Numbers records, stamps virtual time, fans them out."""

    __slots__ = ("_observers", "_writer", "clock", "seq")

    def __init__(
        self,
        clock: SimClock,
        observers: list[Observer] | None = None,
        writer: TraceWriter | None = None,
    ) -> None:
        self.clock = clock
        self.seq = 0
        self._observers = list(observers or [])
        self._writer = writer

    def emit(self, kind: str, fields: dict[str, Any]) -> int:
        """Record one thing that happened now. Returns its sequence number."""
        self.seq += 1
        rec: Record = {"seq": self.seq, "t_ms": self.clock.now_ms, "kind": kind}
        rec.update(fields)
        for observe in self._observers:
            observe(rec)
        if self._writer is not None:
            self._writer.write(rec)
        return self.seq

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class TraceReadError(Exception):
    """A trace file is truncated, corrupted or of an unknown version."""


def read_trace(path: Path) -> Generator[Record, None, None]:
    """Records of a trace file, checked line by line. Raises TraceReadError naming
    the file and line on the first bad one."""
    try:
        f = open_regular(path)
    except FileRefused as exc:
        raise TraceReadError(str(exc)) from None
    with f:
        lineno = 0
        while True:
            # At most one byte past the limit is read, however long the line is.
            raw = f.readline(LINE_BYTES_MAX + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > LINE_BYTES_MAX:
                raise TraceReadError(f"{path}:{lineno}: line longer than {LINE_BYTES_MAX} bytes")
            if not raw.endswith(b"\n"):
                raise TraceReadError(f"{path}:{lineno}: truncated line (no newline at the end)")
            try:
                rec = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TraceReadError(f"{path}:{lineno}: not a JSON object: {exc}") from None
            except RecursionError:
                raise TraceReadError(f"{path}:{lineno}: nested too deeply") from None
            if not isinstance(rec, dict) or not {"seq", "t_ms", "kind"} <= rec.keys():
                raise TraceReadError(f"{path}:{lineno}: a record needs seq, t_ms and kind")
            for key in ("seq", "t_ms"):
                value = rec[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise TraceReadError(
                        f"{path}:{lineno}: {key} must be a non-negative integer, got {value!r}"
                    )
            if lineno == 1 and (rec.get("kind") != "run" or rec.get("v") != TRACE_VERSION):
                raise TraceReadError(
                    f"{path}:1: unknown trace version {rec.get('v')!r} "
                    f"(this posharness reads version {TRACE_VERSION})"
                )
            yield rec
