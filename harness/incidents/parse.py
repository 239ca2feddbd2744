"""Parse stage: read a terminal or host log into entries; a bad line is one problem."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scenarios.model import (
    NetworkSpec,
    ScenarioError,
)

LOG_VERSION = 1
# The wall-clock time a rendered trace starts at (virtual time 0), unless told.
DEFAULT_START = datetime(2024, 3, 15, 9, 0, 0, tzinfo=UTC)
# A log line longer than this is malformed (a batch upload is ~300 kB at most).
LOG_LINE_BYTES_MAX = 1024 * 1024
# At most this many lines are read from one log, and this many problems listed.
LOG_LINES_MAX = 1_000_000
PROBLEMS_MAX = 1_000
# Timestamps are whole milliseconds; skew estimation rounds to the nearest one, so
# two times closer than this are "the same".
TOLERANCE_MS = 2
# One-way latency assumed when no request/response pair can be matched.
DEFAULT_LATENCY_MS = NetworkSpec().latency_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MSG_SKIP = ("terminal_id", "merchant_id")  # carried once per line as "terminal"/"merchant"
# Host actions as the host log names them (the trace calls an RC burst "injected").
_HOST_ACTION_NAMES = {"injected": "unavailable"}
_TIMER_KEYS = {"reprint": "reprint", "batch_close": "batch_close", "confirm": "confirm"}

# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Entry:
    """One log line: its wall time in ms since the Unix epoch, its event and fields."""

    line: int
    ts_ms: int
    event: str
    data: dict[str, Any]


@dataclass(slots=True)
class Log:
    path: str
    entries: list[Entry] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


TERMINAL_EVENTS: dict[str, tuple[str, ...]] = {
    # event -> required fields
    "log_start": (),
    "power": ("state",),
    "boot": (),
    "amount_keyed": ("amount",),
    "card_read": ("pan",),
    "key": ("key",),
    "timeout": (),
    "display": ("outcome",),
    "journal": ("type",),
    "print_start": ("job",),
    "print": ("job", "status"),
    "crash": (),
    "send": ("mti", "stan"),
    "recv": ("mti", "stan"),
}
HOST_EVENTS: dict[str, tuple[str, ...]] = {
    "log_start": (),
    "recv": ("mti", "stan"),
    "send": ("mti", "stan"),
    "decision": ("action", "mti", "stan"),
    "crash": ("down_until",),
}
_INT_FIELDS = ("amount", "stan")
_STR_FIELDS = ("mti", "pan", "outcome", "state", "action", "rc", "rrn", "key", "status", "job")


def parse_ts(text: Any) -> int:
    """ISO 8601 wall time -> ms since the Unix epoch (naive times are taken as UTC)."""
    if not isinstance(text, str):
        raise ValueError("ts: expected an ISO 8601 string")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def _check_line(obj: Any, events: dict[str, tuple[str, ...]]) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    event = obj.get("event")
    if not isinstance(event, str):
        return "missing event"
    if event not in events:
        return f"unknown event {event!r}"
    for key in events[event]:
        if key not in obj:
            return f"{event}: missing {key}"
    for key in _INT_FIELDS:
        if key in obj and (not isinstance(obj[key], int) or isinstance(obj[key], bool)):
            return f"{event}: {key} must be an integer, got {obj[key]!r}"
    for key in _STR_FIELDS:
        if key in obj and not isinstance(obj[key], str):
            return f"{event}: {key} must be a string, got {obj[key]!r}"
    return None


def parse_log(path: Path, events: dict[str, tuple[str, ...]], problems: list[str]) -> Log:
    """Read one log; every bad line becomes a "file:line: problem" entry in `problems`."""
    log = Log(str(path))
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno > LOG_LINES_MAX:
                _problem(
                    problems, f"{path}:{lineno}: more than {LOG_LINES_MAX} lines, rest ignored"
                )
                break
            where = f"{path}:{lineno}"
            if len(raw) > LOG_LINE_BYTES_MAX:
                _problem(problems, f"{where}: line longer than {LOG_LINE_BYTES_MAX} bytes, skipped")
                continue
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                _problem(problems, f"{where}: truncated line (no newline at the end), skipped")
                continue
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                _problem(problems, f"{where}: not a JSON object ({exc}), skipped")
                continue
            bad = _check_line(obj, events)
            if bad is None:
                try:
                    ts_ms = parse_ts(obj.get("ts"))
                except ValueError as exc:
                    bad = f"bad timestamp {obj.get('ts')!r} ({exc})"
            if bad is not None:
                _problem(problems, f"{where}: {bad}, skipped")
                continue
            event = obj.pop("event")
            obj.pop("ts")
            if event == "log_start":
                log.header = obj
            log.entries.append(Entry(lineno, ts_ms, event, obj))
    return log


def _problem(problems: list[str], text: str) -> None:
    if len(problems) < PROBLEMS_MAX:
        problems.append(text)
    elif len(problems) == PROBLEMS_MAX:
        problems.append("... more problems not listed")
