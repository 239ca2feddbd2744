"""Whole-pair checks before any inference: the two files are a terminal log and a
host log, in that order, of one terminal, and they belong together. Each refusal is
one ScenarioError line (exit 2), never a guess."""

import json
from pathlib import Path

from scenarios.model import ScenarioError

from .parse import Entry, Log

# How much of a file is read to tell a terminal log from a host log.
SNIFF_BYTES = 64 * 1024
_TERMINAL_ONLY = {"amount_keyed", "card_read", "display", "print", "print_start", "boot", "key"}
_HOST_ONLY = {"decision"}


def sniff(path: Path) -> str:
    """ "terminal", "host" or "" (cannot tell), from the header's format or from the
    events that only one side writes."""
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return ""
    events: set[str] = set()
    for raw in head.splitlines()[:200]:
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(obj, dict):
            continue
        fmt = str(obj.get("format", "")).lower()
        if "host" in fmt:
            return "host"
        if "terminal" in fmt:
            return "terminal"
        events.add(str(obj.get("event", "")).lower())
    if events & _HOST_ONLY and not events & _TERMINAL_ONLY:
        return "host"
    if events & _TERMINAL_ONLY and not events & _HOST_ONLY:
        return "terminal"
    return ""


def check_order(terminal_log: Path, host_log: Path) -> None:
    """Swapped arguments, or two logs of the same side."""
    t, h = sniff(terminal_log), sniff(host_log)
    if t == "host" and h == "terminal":
        raise ScenarioError(
            f"{terminal_log}: this is a host log and {host_log} a terminal log: arguments "
            "swapped (give the terminal log first)"
        )
    if t == h == "host":
        raise ScenarioError(f"{terminal_log}: a host log, where the terminal log was expected")
    if t == h == "terminal":
        raise ScenarioError(f"{host_log}: a terminal log, where the host log was expected")


def terminal_of(tlog: Log) -> str:
    """The one terminal id of a terminal log; two or more interleaved are refused."""
    ids: dict[str, int] = {}
    for e in tlog.entries:
        tid = e.data.get("terminal")
        if isinstance(tid, str) and tid:
            ids.setdefault(tid, e.line)
    if len(ids) > 1:
        names = sorted(ids, key=lambda k: ids[k])
        raise ScenarioError(
            f"{tlog.path}: lines of {len(ids)} terminals interleaved ({', '.join(names[:5])}): "
            f'split it into one log per terminal (e.g. grep \'"terminal":"{names[0]}"\') '
            "and import each with the host log"
        )
    return next(iter(ids), "")


def terminals_of(tlog: Log) -> list[str]:
    """Every terminal id a terminal log names, in order of first appearance."""
    ids: dict[str, None] = {}
    for e in tlog.entries:
        tid = e.data.get("terminal")
        if isinstance(tid, str) and tid:
            ids.setdefault(tid)
    return list(ids)


def only_terminal(tlog: Log, tid: str) -> None:
    """Keep the lines of `tid` (and those naming no terminal) of a terminal log that
    interleaves several; the header is that terminal's own `log_start`."""
    if tid not in terminals_of(tlog):
        raise ScenarioError(f"{tlog.path}: no line for terminal {tid}")
    kept = [e for e in tlog.entries if e.data.get("terminal") in (None, "", tid)]
    tlog.entries = kept
    tlog.header = next((e.data for e in kept if e.event == "log_start"), tlog.header)


def keep_terminal(hlog: Log, tid: str, notes: list[str]) -> None:
    """A host log serves many terminals: keep the lines of `tid` (and the host-wide
    ones: header, crashes). A host log with no line for `tid` does not belong."""
    kept: list[Entry] = []
    others: dict[str, int] = {}
    for e in hlog.entries:
        who = e.data.get("terminal")
        if not isinstance(who, str) or not who or who == tid:
            kept.append(e)
        else:
            others[who] = others.get(who, 0) + 1
    if tid and others and not any(isinstance(e.data.get("terminal"), str) for e in kept):
        raise ScenarioError(
            f"{hlog.path}: no line for terminal {tid} (the host log has "
            f"{', '.join(sorted(others)[:5])}): the logs do not belong together"
        )
    if others:
        notes.append(
            f"{hlog.path}: {sum(others.values())} lines of {len(others)} other terminals "
            f"ignored [sure]"
        )
    hlog.entries = kept


def check_overlap(tlog: Log, hlog: Log, matched: int, sent: int, received: int) -> None:
    """Messages on both sides and none of them the same: not one incident."""
    if sent and received and matched == 0:
        raise ScenarioError(
            f"{hlog.path}: none of the {sent} messages {tlog.path} sent appears among the "
            f"{received} the host received: the logs do not belong together (another "
            "terminal, day or host?)"
        )
