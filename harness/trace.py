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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import structlog

from .engine import SimClock

TRACE_VERSION = 1

Record = dict[str, Any]
Observer = Callable[[Record], None]

# One trace line longer than this is refused by readers: nothing a run writes comes
# close (a batch upload of 10,000 items is about 300 kB).
LINE_BYTES_MAX = 4 * 1024 * 1024


def _dumps(obj: Any, **_: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _to_record(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # structlog puts the positional "event" last; a record is already complete in
    # the "record" key, so render exactly that, keys in insertion order.
    rec: dict[str, Any] = event_dict["record"]
    return rec


class TraceWriter:
    """Writes records as JSON lines through a structlog logger bound to one file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[_to_record, structlog.processors.JSONRenderer(serializer=_dumps)],
        )

    def write(self, rec: Record) -> None:
        self._log.msg("trace", record=rec)

    def close(self) -> None:
        self._file.close()


class Trace:
    """Numbers records, stamps virtual time, fans them out."""

    __slots__ = ("clock", "seq", "_observers", "_writer", "_by_kind")

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


def read_trace(path: Path) -> Iterator[Record]:
    """Records of a trace file, checked line by line. Raises TraceReadError naming
    the file and line on the first bad one."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > LINE_BYTES_MAX:
                raise TraceReadError(f"{path}:{lineno}: line longer than {LINE_BYTES_MAX} bytes")
            if not raw.endswith(b"\n"):
                raise TraceReadError(f"{path}:{lineno}: truncated line (no newline at the end)")
            try:
                rec = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TraceReadError(f"{path}:{lineno}: not a JSON object: {exc}") from None
            if not isinstance(rec, dict) or not {"seq", "t_ms", "kind"} <= rec.keys():
                raise TraceReadError(f"{path}:{lineno}: a record needs seq, t_ms and kind")
            if lineno == 1:
                if rec.get("kind") != "run" or rec.get("v") != TRACE_VERSION:
                    raise TraceReadError(
                        f"{path}:1: unknown trace version {rec.get('v')!r} "
                        f"(this posharness reads version {TRACE_VERSION})"
                    )
            yield rec
