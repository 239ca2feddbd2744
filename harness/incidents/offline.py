"""Infer stage (offline): store-and-forward settings and offline receipts.

An offline sale shows in a terminal log as an approved display with no RRN
(`"text": "APPROVED OFFLINE"`), a receipt with `"rrn": ""`, and later 0220 advice
sends (`rc` "Y3", `offline_ms`) answered by 0230s. A log whose header config does
not give `offline_floor` still needs one to replay its offline approvals: the
largest amount the terminal uploaded as an advice is the smallest floor that
approves all of them offline.
"""

from typing import Any

from acquirer.protocol import MTI_ADVICE

from .parse import Log


def is_advice_send(data: dict[str, Any]) -> bool:
    """An offline sale's 0220 advice: a completion or tip 0220 names `orig_key`, an
    advice never does."""
    return data.get("mti") == MTI_ADVICE and not data.get("orig_key")


def advice_base(key: str) -> str:
    """The sale's idempotency key of an advice key (its upload suffix `-uN` off)."""
    base, sep, n = key.rpartition("-u")
    return base if sep and n.isdigit() else key


def offline_keys(tlog: Log) -> set[str]:
    """The idempotency keys of the sales this terminal uploaded as advices (the
    upload suffix `-uN` taken off), and those its journal says were approved offline."""
    keys: set[str] = set()
    for e in tlog.entries:
        if is_advice_send(e.data) and e.event == "send":
            keys.add(advice_base(str(e.data.get("idem_key", ""))))
        elif e.event == "journal" and e.data.get("type") == "offline_approved":
            keys.add(str(e.data.get("key", "")))
    return keys


def offline_settings(tlog: Log, config: dict[str, Any], notes: list[str]) -> dict[str, int]:
    """`offline_floor` for a log that uploaded advices but whose header config does
    not set one (offline_max and offline_deadline_ms come from the config as given)."""
    if isinstance(config.get("offline_floor"), int):
        return {}
    amounts = [
        (e.data.get("amount"), e.line)
        for e in tlog.entries
        if e.event == "send" and is_advice_send(e.data)
    ]
    sized = [(a, line) for a, line in amounts if isinstance(a, int) and a > 0]
    if not sized:
        return {}
    floor, line = max(sized)
    notes.append(
        f"{tlog.path}:{line}: offline sales uploaded as advices but no offline_floor in the "
        f"header config: replayed with offline_floor = {floor}, the largest advice [likely]"
    )
    return {"offline_floor": floor}
