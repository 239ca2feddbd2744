"""Parse stage: read a terminal or host log into entries; a bad line is one problem."""

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scenarios.model import (
    NetworkSpec,
    ScenarioError,
)

from .adapters import ADAPTERS

LOG_VERSION = 1
# The wall-clock time a rendered trace starts at (virtual time 0), unless told.
DEFAULT_START = datetime(2024, 3, 15, 9, 0, 0, tzinfo=UTC)
# A log line longer than this is malformed (a batch upload is ~300 kB at most).
LOG_LINE_BYTES_MAX = 1024 * 1024
# At most this many lines are read from one log, and this many problems listed.
LOG_LINES_MAX = 1_000_000
# A log file larger than this is refused before reading (a busy terminal writes
# well under 100 MB a month).
LOG_BYTES_MAX = 256 * 1024 * 1024
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
_LOWER_FIELDS = ("outcome", "state", "reason", "action", "status", "key", "timer")
_STR_FIELDS = ("mti", "pan", "outcome", "state", "action", "rc", "rrn", "key", "status", "job")


def parse_ts(text: Any, tz: tzinfo | None = None) -> int:
    """ISO 8601 wall time -> ms since the Unix epoch. A time without an offset takes
    `tz`; without `tz` it is refused (NaiveTime), since guessing UTC would shift the
    clock skew by hours with no warning."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        raise EpochTime("a Unix epoch number, not an ISO 8601 time")
    if not isinstance(text, str):
        raise ValueError("ts: expected an ISO 8601 string")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if tz is None:
            raise NaiveTime(text)
        dt = dt.replace(tzinfo=tz)
    return (dt - _EPOCH) // _MS


class NaiveTime(ValueError):
    """A timestamp without a UTC offset and no --tz to supply one."""


class EpochTime(ValueError):
    """A timestamp given as a Unix epoch number."""


def parse_tz(text: str) -> tzinfo:
    """`--tz`: an IANA zone name (Europe/Berlin) or a fixed offset (+01:00, -0530, Z)."""
    if text in ("Z", "UTC", "utc"):
        return UTC
    if text[:1] in "+-":
        try:
            return datetime.fromisoformat("2000-01-01T00:00:00" + text).tzinfo or UTC
        except ValueError:
            pass
    else:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ScenarioError(f"--tz: {text!r} is neither a time zone name nor an offset like +01:00")


def _normalise(obj: dict[str, Any]) -> None:
    """Vocabulary words are case-insensitive (APPROVED, ON, Charge): lower them."""
    event = obj.get("event")
    if isinstance(event, str):
        obj["event"] = event = event.lower()
    for key in _LOWER_FIELDS:
        if isinstance(obj.get(key), str) and (key != "key" or event == "key"):
            obj[key] = obj[key].lower()
    receipt = obj.get("receipt")
    if isinstance(receipt, dict) and isinstance(receipt.get("status"), str):
        receipt["status"] = receipt["status"].lower()


def _check_line(obj: Any, events: dict[str, tuple[str, ...]]) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    _normalise(obj)
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
            if isinstance(obj[key], str) and obj[key].isdigit():
                return f"{event}: {key} is a digit string {obj[key]!r}, not an integer"
            return f"{event}: {key} must be an integer, got {obj[key]!r}"
    for key in _STR_FIELDS:
        if key in obj and not isinstance(obj[key], str):
            return f"{event}: {key} must be a string, got {obj[key]!r}"
    return None


def _open_bounded(path: Path) -> IO[bytes]:
    """Open a log for reading: a regular file of at most LOG_BYTES_MAX bytes (a FIFO
    or a device would block or never end)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ScenarioError(f"{path}: not a regular file")
    if st.st_size > LOG_BYTES_MAX:
        raise ScenarioError(f"{path}: {st.st_size} bytes, more than the {LOG_BYTES_MAX} allowed")
    try:
        return path.open("rb")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_log(
    path: Path,
    events: dict[str, tuple[str, ...]],
    problems: list[str],
    tz: tzinfo | None = None,
    fmt: str = "jsonl",
) -> Log:
    """Read one log (through the adapter `fmt`, adapters.ADAPTERS); every bad line
    becomes a "file:line: problem" entry in `problems`.
    Whole-file problems raise ScenarioError (one line): no usable line, most lines
    bad in the same way (epoch times, digit-string STANs, not JSON), a time without
    an offset and no `tz`."""
    log = Log(str(path))
    bad_lines: list[tuple[int, str]] = []
    if fmt not in ADAPTERS:
        raise ScenarioError(f"--format: {fmt!r} is not one of {', '.join(sorted(ADAPTERS))}")
    with _open_bounded(path) as f:
        read = 0
        for lineno, raw in enumerate(ADAPTERS[fmt](f), 1):
            read += len(raw)
            if lineno > LOG_LINES_MAX:
                _problem(
                    problems, f"{path}:{lineno}: more than {LOG_LINES_MAX} lines, rest ignored"
                )
                break
            if read > LOG_BYTES_MAX:  # the file grew while we read it
                _problem(
                    problems, f"{path}:{lineno}: more than {LOG_BYTES_MAX} bytes, rest ignored"
                )
                break
            where = f"{path}:{lineno}"
            if len(raw) > LOG_LINE_BYTES_MAX:
                bad_lines.append((lineno, f"line longer than {LOG_LINE_BYTES_MAX} bytes"))
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
                bad_lines.append((lineno, "not JSON"))
                _problem(problems, f"{where}: not a JSON object ({exc}), skipped")
                continue
            bad = _check_line(obj, events)
            if bad is None:
                try:
                    ts_ms = parse_ts(obj.get("ts"), tz)
                except NaiveTime as exc:
                    raise ScenarioError(
                        f"{where}: time {exc} has no UTC offset: add one to the log or give "
                        "--tz (a zone such as Europe/Berlin, or an offset such as +01:00)"
                    ) from None
                except EpochTime:
                    bad = f"bad timestamp {obj.get('ts')!r} (Unix epoch number, not ISO 8601)"
                except ValueError as exc:
                    bad = f"bad timestamp {obj.get('ts')!r} ({exc})"
            if bad is None and event_of(obj) == "crash" and "down_until" in obj:
                try:
                    obj["down_until_ms"] = parse_ts(obj["down_until"], tz)
                except ValueError as exc:
                    bad = f"crash: bad down_until {obj['down_until']!r} ({exc})"
            if bad is not None:
                bad_lines.append((lineno, bad))
                _problem(problems, f"{where}: {bad}, skipped")
                continue
            event = obj.pop("event")
            obj.pop("ts")
            if event == "log_start":
                log.header = obj
            log.entries.append(Entry(lineno, ts_ms, event, obj))
    _refuse_whole_file(path, log, bad_lines)
    return log


def event_of(obj: dict[str, Any]) -> str:
    return str(obj.get("event", ""))


def _refuse_whole_file(path: Path, log: Log, bad_lines: list[tuple[int, str]]) -> None:
    """A file with no usable line, or more bad lines than good ones, is the wrong
    file or the wrong format: one line naming the first problem, not one per line."""
    good = sum(1 for e in log.entries if e.event != "log_start")
    if not bad_lines and good:
        return
    if not bad_lines:
        raise ScenarioError(f"{path}: empty log (no event lines)")
    # Epoch times and digit-string fields are the format of another tool: every line
    # of that kind is wrong, so one of them is enough to refuse the file.
    systematic = [b for b in bad_lines if "Unix epoch" in b[1] or "digit string" in b[1]]
    if systematic or good == 0 or (len(bad_lines) >= 3 and len(bad_lines) > good):
        line, what = (systematic or bad_lines)[0]
        raise ScenarioError(
            f"{path}: {len(bad_lines)} of {len(bad_lines) + good} lines unusable, the first "
            f"at line {line}: {what}"
        )


def _problem(problems: list[str], text: str) -> None:
    if len(problems) < PROBLEMS_MAX:
        problems.append(text)
    elif len(problems) == PROBLEMS_MAX:
        problems.append("... more problems not listed")
