"""Infer stage (holds): pre-authorisations, completions and tip adjusts.

A terminal log shows a pre-authorisation as an amount keyed with `"preauth": true`
(`{"event": "amount_keyed", "amount": 30000, "preauth": true}`), sent as a 0100 and
answered by a 0110. The cashier's completion and tip are `key` lines naming a sale by
its RRN: `{"event": "key", "key": "complete", "rrn": "000000000001", "amount": 26000}`
(the hold's RRN, the amount to capture) and `{"event": "key", "key": "tip", "rrn":
"000000000003", "tip": 2000}` (the sale's RRN: a purchase's, or a completion's own).
Both are sent as 0220s naming `orig_key` (an offline advice never does). The importer
turns each key into a `complete` / `tip` step naming the payment step whose approval
(or, for a tip on a completion, whose completion) carried that RRN.
"""

from typing import Any

from acquirer.protocol import MTI_ADVICE
from scenarios.model import ScenarioError, Step

from .credits import CREDITS_MAX, sale_of_rrn
from .model import _Purchase
from .parse import Log

HOLD_KEYS = ("complete", "tip")
ADJUST_CODE = "020000"  # a 0220's processing code for a tip adjust
_APPROVED_ANSWERS = ("0110", "0210")


def is_adjust(data: dict[str, Any]) -> bool:
    """A completion or tip 0220 (or its 0230): it names `orig_key`; an advice never does."""
    return str(data.get("mti", ""))[:3] in ("022", "023") and bool(data.get("orig_key"))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_hold_lines(tlog: Log) -> None:
    """A malformed pre-authorisation, completion or tip line is one ScenarioError
    naming file:line and the field."""
    for e in tlog.entries:
        where = f"{tlog.path}:{e.line}"
        d = e.data
        if e.event == "amount_keyed" and "preauth" in d and not isinstance(d["preauth"], bool):
            raise ScenarioError(f"{where}: amount_keyed: preauth must be true or false")
        shows = e.event == "display" and d["outcome"] in ("completed", "tip-added")
        if shows and "amount" in d and (not _int(d["amount"]) or d["amount"] < 0):
            raise ScenarioError(f"{where}: display {d['outcome']}: amount must be >= 0")
        if e.event != "key" or d["key"] not in HOLD_KEYS:
            continue
        if not isinstance(d.get("rrn"), str) or not d["rrn"]:
            what = "hold's" if d["key"] == "complete" else "sale's"
            raise ScenarioError(f"{where}: key {d['key']!r} needs the {what} rrn (a string)")
        field = "amount" if d["key"] == "complete" else "tip"
        if field not in d:
            raise ScenarioError(f"{where}: key {d['key']!r} needs {field}")
        if not _int(d[field]) or d[field] < 0:
            raise ScenarioError(f"{where}: key {d['key']!r}: {field} must be an integer >= 0")


def hold_keys(tlog: Log, hlog: Log) -> dict[str, str]:
    """A completion's own key -> the key of the hold it captures (the `orig_key` of
    its 0220, as the terminal sent it or the host received it)."""
    out: dict[str, str] = {}
    for log, event in ((tlog, "send"), (hlog, "recv")):
        for e in log.entries:
            d = e.data
            completion = is_adjust(d) and d.get("processing_code", "000000") != ADJUST_CODE
            if e.event == event and d["mti"] == MTI_ADVICE and completion:
                out.setdefault(str(d.get("idem_key", "")), str(d["orig_key"]))
    return out


def completion_sales(tlog: Log, hlog: Log, sales: dict[str, int]) -> dict[str, int]:
    """A completion's own RRN -> the payment step of the hold it captured: a tip on a
    completion names the completion's RRN. From the 0230s the terminal received, else
    the host's `capture` decisions (the completion's key -> the hold's key)."""
    key_rrn: dict[str, str] = {}
    for e in tlog.entries:
        if e.event == "recv" and e.data["mti"] in _APPROVED_ANSWERS and e.data.get("rc") == "00":
            key_rrn.setdefault(str(e.data.get("idem_key", "")), str(e.data.get("rrn", "")))
    for e in hlog.entries:
        if e.event == "decision" and e.data["action"] in ("hold", "charge"):
            key_rrn.setdefault(str(e.data.get("key", "")), str(e.data.get("rrn", "")))
    hold_of = hold_keys(tlog, hlog)
    out: dict[str, int] = {}
    captured = [
        (str(e.data.get("key", "")), str(e.data.get("rrn", "")))
        for e in hlog.entries
        if e.event == "decision" and e.data["action"] == "capture"
    ]
    answered = [
        (str(e.data.get("idem_key", "")), str(e.data.get("rrn", "")))
        for e in tlog.entries
        if e.event == "recv" and is_adjust(e.data) and e.data.get("rc") == "00"
    ]
    for key, rrn in captured + answered:
        sale = sales.get(key_rrn.get(hold_of.get(key, ""), ""))
        if rrn and sale is not None:
            out.setdefault(rrn, sale)
    return out


def sales_by_rrn(tlog: Log, hlog: Log, purchases: list[_Purchase]) -> dict[str, int]:
    """RRN -> payment step, for the RRNs a cashier's key may name: an approved sale's
    or hold's, and a completion's own (it names the hold's payment step)."""
    sales = sale_of_rrn(tlog, purchases)
    sales.update({r: n for r, n in completion_sales(tlog, hlog, sales).items() if r not in sales})
    return sales


def hold_steps(
    tlog: Log, hlog: Log, origin: int, purchases: list[_Purchase], notes: list[str]
) -> list[Step]:
    """The cashier's complete and tip steps. A key naming an RRN no approved sale (or
    completion) in the log has raises ScenarioError (one line)."""
    sales = sales_by_rrn(tlog, hlog, purchases)
    steps: list[Step] = []
    for e in tlog.entries:
        if e.event != "key" or e.data["key"] not in HOLD_KEYS:
            continue
        where = f"{tlog.path}:{e.line}"
        action, rrn = str(e.data["key"]), str(e.data["rrn"])
        if rrn not in sales:
            what = "pre-authorisation" if action == "complete" else "sale or completion"
            raise ScenarioError(
                f"{where}: key {action!r} names rrn {rrn!r}, which no approved {what} in the "
                "log has"
            )
        if len(steps) >= CREDITS_MAX:
            raise ScenarioError(f"{where}: more than {CREDITS_MAX} completions and tips")
        amount = int(e.data["amount"] if action == "complete" else e.data["tip"])
        steps.append(Step(e.ts_ms - origin, action, amount=amount, sale=sales[rrn]))
        what = "completion" if action == "complete" else "tip"
        notes.append(
            f"{where}: cashier's {what} of {amount} on sale {sales[rrn]} (rrn {rrn}) [sure]"
        )
    return steps
