"""The scenario-format reference, generated from the dataclasses the loader builds.

Every key a scenario file may hold is a field of a frozen dataclass (`Scenario`,
`TerminalSpec`, `HostSpec`, `NetworkSpec`, `PeopleSpec`, `CardSpec`, `Expect`) or
of a registered fault kind. This module walks those fields and writes, for each:
its type, its default, its unit and its meaning. The same data feeds
`posharness list --json` and `docs/scenario-format.md`; a test regenerates the
page and fails when it drifts from the code (`python -m harness.docgen --check`).

Meanings come from FIELD_DOCS below, then from a field's trailing `# comment` in
its source. A field with neither is listed as undocumented, and the test fails:
a new key cannot ship without a sentence.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import sys
import tokenize
from functools import cache
from pathlib import Path
from typing import Any

import faults
from faults.base import Fault
from scenarios.model import (
    CardSpec,
    Expect,
    HostSpec,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    TerminalSpec,
    WalletSpec,
)

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "scenario-format.md"
UNDOCUMENTED = "(undocumented)"

# Meanings, keyed by "Class.field" or "*.field" (any class). Comments in the source
# are used where no entry is given; these entries win where a comment is too terse.
FIELD_DOCS: dict[str, str] = {
    "Scenario.name": "the scenario's name: report rows, trace file names",
    "Scenario.description": "one or two sentences: what happens and what it shows",
    "Scenario.seed": "the run's seed: every random draw (jitter, swarm plans) derives from it",
    "Scenario.firmware": (
        "firmware that runs it: `reference` or `zoo:NAME` (code from elsewhere only "
        "from the command line, `--firmware`)"
    ),
    "Scenario.close_batch": "close the batch once the world is quiet",
    "Scenario.max_ms": (
        "stop the run at this virtual time (-1: last step + 1 hour + settle_within_ms per customer)"
    ),
    "TerminalSpec.id": "terminal id (ISO 8583 field 41)",
    "TerminalSpec.merchant_id": "merchant id (ISO 8583 field 42)",
    "TerminalSpec.response_timeout_ms": "how long the terminal waits for an answer",
    "TerminalSpec.max_sends": "first send + repeats with the same key before reversing",
    "TerminalSpec.debounce_ms": "a second confirm or tap within this window is ignored",
    "TerminalSpec.amount_max": "largest sale accepted at entry",
    "TerminalSpec.reversal_max_tries": "reversal sends before it is flagged for manual handling",
    "TerminalSpec.partial_approval": (
        "take a partial approval (RC 10) for what a card covers; needs the firmware "
        "feature `partial`"
    ),
    "TerminalSpec.name": (
        "only in `[[terminals]]`: the name steps and faults give this terminal "
        "(default: its id; a clone, two entries with one id, needs one)"
    ),
    "TerminalSpec.firmware": (
        "only in `[[terminals]]`: the firmware this terminal runs (default: the scenario's)"
    ),
    "TerminalSpec.chip": (
        "read cards by chip: an approved card sale stands only once the card accepts "
        "the approval (EMV second GENERATE AC); needs the firmware feature `chip`"
    ),
    "TerminalSpec.offline_floor": (
        "approve a card sale of at most this many minor units offline when the host "
        "does not answer, and upload it later as an advice (0220); 0: never offline. "
        "Needs the firmware feature `offline`; not with `partial_approval`"
    ),
    "TerminalSpec.offline_max": (
        "at most this many offline sales wait for upload at once (1-100); one more is "
        "refused like any unanswered sale"
    ),
    "TerminalSpec.offline_deadline_ms": (
        "an offline sale must be uploaded (or shown expired) within this long (1 min to "
        "7 days; Square: 24 h); the host refuses a later advice with RC EX"
    ),
    "HostSpec.processing_ms": "host time to process one request",
    "HostSpec.idempotency_retention_ms": "how long the host keeps key -> outcome records",
    "HostSpec.test_amounts": (
        "the test-card catalogue's amount rules (5.00 -> RC 05, ...); false for real "
        "amounts, e.g. imported incidents"
    ),
    "NetworkSpec.latency_ms": "one-way latency of every message",
    "NetworkSpec.jitter_ms": "uniform extra delay in [0, jitter_ms], drawn from the seed",
    "PeopleSpec.confirm_after_ms": "cashier: keyed amount -> confirm",
    "PeopleSpec.tap_after_ms": "customer: keyed amount -> card tap",
    "PeopleSpec.retap_after_ms": "customer: tap again this long after a misread",
    "PeopleSpec.retry_on_failed": "times the cashier tries again after a FAILED display",
    "PeopleSpec.retry_after_ms": "cashier: FAILED -> next try",
    "PeopleSpec.reprint_on_pending": "the cashier asks for a reprint when a receipt is pending",
    "PeopleSpec.reprint_after_ms": "cashier: pending receipt -> reprint request",
    "PeopleSpec.reprints_max": "reprint requests per receipt before the cashier gives up",
    "PeopleSpec.restart_after_power": "re-run an unfinished purchase after a reboot",
    "PeopleSpec.print_ms": "time one receipt takes to print",
    "PeopleSpec.next_terminal_on_failed": (
        "several terminals: a customer whose sale ends FAILED walks to the next terminal "
        "and pays there (once)"
    ),
    "CardSpec.pan": "card number (digits)",
    "CardSpec.balance": "available funds",
    "CardSpec.rc": "force this response code for every purchase with the card",
    "CardSpec.slow_ms": "extra host processing time for this card's issuer",
    "CardSpec.partial": (
        "the issuer approves what the balance covers (RC 10, partial approval) instead of "
        "declining, for a terminal that can take it (needs the firmware feature `partial`)"
    ),
    "CardSpec.chip": (
        '"" the chip accepts the approval; "decline": it declines it (issuer '
        'authentication failed); "removed": the card is pulled before the terminal is '
        "done. Only on a chip terminal (`[terminal] chip`)"
    ),
    "WalletSpec.code": "the payment code the customer's phone shows (12-19 digits)",
    "WalletSpec.balance": "available funds in the wallet",
    "WalletSpec.confirm_ms": "0 pays at once; N: the customer confirms N ms after the pay",
    "WalletSpec.confirms": "false: the customer never confirms (gives up; the order closes unpaid)",
    "WalletSpec.rc": "force this response code for every payment with the code",
    "WalletSpec.stale_screen": (
        'the phone shows an old "payment successful" screen: the cashier, seeing it, '
        "presses confirm 2 s after the scan"
    ),
    "ChipRefusal.reason": (
        '"decline": the card declines the approval (issuer authentication failed); '
        '"removed": it is pulled from the reader before the terminal is done'
    ),
    "LateConfirm.extra_ms": "the customer confirms this much later than their phone would",
    "LateConfirm.never": "the customer never confirms that order",
    "WalletSpec.answer_rc": (
        'the pay answer says this code (e.g. "96": result unknown) while the order goes on'
    ),
    "Expect.invariants": '"all", or a list of invariant names that must hold',
    "Expect.violated": "invariants that must be violated (zoo demonstrations)",
    "Expect.settle_within_ms": "eventually-settles bound after the last fault",
    # Every fault kind's trigger fields.
    "*.from_ms": "the fault's window opens at this virtual time",
    "*.to_ms": "the window closes at this virtual time (-1: never)",
    "*.nth": "apply to the nth matching item (1 = the first; 0 = every match in the window)",
    "*.count": "and to this many matching items from the nth on",
    "*.terminal": (
        "several terminals: the name of the terminal whose messages, devices or power "
        'the fault acts on ("": the first)'
    ),
    "*.optional": (
        "allow the fault never to apply (by default a fault that never applies fails the run)"
    ),
    "*.direction": "to_host, to_terminal or any",
    "*.mti": 'message type to match, e.g. "0210" ("" = any)',
    "ClockSkew.drift_ppm": "terminal timers run this much slow (> 0) or fast (< 0)",
    "Corrupt.field": "the message field damaged in flight (e.g. amount, rrn, rc)",
    "Delay.delay_ms": "extra delay of the matched message",
    "DoubleConfirm.gap_ms": "time between the two confirm presses",
    "DoubleTap.gap_ms": "time between the two taps",
    "Duplicate.gap_ms": "the copy arrives this long after the original",
    "Forge.delay_ms": "the forged answer arrives this long after the request",
    "Forge.rrn": "RRN the forged approval carries",
    "HalfOpen.hold_ms": "TCP: how long the connection stays silent before it is closed",
    "HostCrash.when": '"after_commit" (the sale is booked, no answer) or "before_commit"',
    "HostCrash.down_ms": "how long the host stays down",
    "KeyingError.amount": "the amount the cashier keys instead of the intended one",
    "SlowReader.pause_ms": "TCP: how long the receiver reads nothing (elsewhere: the delay)",
    "PowerCut.at_ms": "cut at this virtual time (give at_ms or after, not both)",
    "PowerCut.after": 'cut right after the nth "send", "receive", "journal" or "print"',
    "PowerCut.off_ms": "power comes back this long after the cut",
    "RcBurst.rc": "response code the host answers without processing",
    "Reorder.hold_ms": "the message is held this long, so later ones overtake it",
    "SlowHost.extra_ms": "extra host processing time",
    "Splice.rc": 'rewrite the spliced answer\'s response code ("" keeps it; breaks the MAC)',
    "Splice.delay_ms": "the spliced answer reaches the terminal this long after the request",
    "Replay.leg": '"request" (a terminal request replayed to the host) or "answer"',
    "Replay.after_ms": "the recorded frame is played again this long after the original",
    "DeviceSwap.at_ms": "the cashier closes the day at this virtual time; then the swap",
    "DeviceSwap.off_ms": "the replacement device powers on this long after the old one stops",
}

# Units by the field name's last part (units last: delay_ms, drift_ppm).
UNITS = {"ms": "virtual milliseconds", "ppm": "parts per million"}
MONEY_FIELDS = {"amount", "balance", "amount_max"}
SKIPPED = {
    "source",
    "terminal",
    "host",
    "network",
    "people",
    "cards",
    "wallets",
    "steps",
    "faults",
    "expect",
    "terminals",
}


@cache
def _source_comments(cls: type) -> dict[str, str]:
    """field name -> its trailing `# comment` (or the comment lines above it)."""
    out: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return out
    above: list[str] = []
    for tok_line in source.splitlines():
        stripped = tok_line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        name, colon, _rest = stripped.partition(":")
        comment = ""
        if colon and name.isidentifier():
            toks = tokenize.generate_tokens(io.StringIO(stripped + "\n").readline)
            try:
                comment = next((t.string for t in toks if t.type == tokenize.COMMENT), "")
            except tokenize.TokenError:
                comment = ""
            text = comment.lstrip("# ").strip() or " ".join(above)
            if text:
                out.setdefault(name, text)
        above = []
    return out


def meaning(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        key = f"{klass.__name__}.{name}"
        if key in FIELD_DOCS:
            return FIELD_DOCS[key]
    if f"*.{name}" in FIELD_DOCS:
        return FIELD_DOCS[f"*.{name}"]
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass):
            text = _source_comments(klass).get(name)
            if text:
                return text
    return UNDOCUMENTED


def unit(name: str) -> str:
    if name in MONEY_FIELDS:
        return "minor units"
    return UNITS.get(name.rpartition("_")[2], "") if "_" in name else ""


def _type_name(f: dataclasses.Field[Any]) -> str:
    tp = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}.get(
        tp, tp.replace("tuple[str, ...]", "list of strings")
    )


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def describe_fields(
    cls: type, skip: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """One dict per key: name, type, default, unit, meaning (JSON-ready)."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = _default(f)
        rows.append(
            {
                "key": f.name,
                "type": _type_name(f),
                "default": list(default) if isinstance(default, tuple) else default,
                "unit": unit(f.name),
                "meaning": meaning(cls, f.name),
            }
        )
    return rows


TABLES: tuple[tuple[str, type], ...] = (
    ("[terminal]", TerminalSpec),
    ("[host]", HostSpec),
    ("[network]", NetworkSpec),
    ("[people]", PeopleSpec),
    ("[[cards]]", CardSpec),
    ("[[wallets]]", WalletSpec),
    ("[expect]", Expect),
)

STEP_KEYS: tuple[dict[str, Any], ...] = (
    {
        "key": "at_ms",
        "type": "integer",
        "default": None,
        "unit": "virtual milliseconds",
        "meaning": "when the step happens (required)",
    },
    {
        "key": "terminal",
        "type": "string",
        "default": "",
        "unit": "",
        "meaning": "several terminals: the name of the terminal it happens at (default: the first)",
    },
    {
        "key": "repeat",
        "type": "integer",
        "default": 1,
        "unit": "",
        "meaning": "the step happens this many times, `every_ms` apart (a busy day in one "
        "table: `repeat = 10000` purchases)",
    },
    {
        "key": "every_ms",
        "type": "integer",
        "default": 0,
        "unit": "virtual milliseconds",
        "meaning": "with `repeat`: the time between one repetition and the next",
    },
    {
        "key": "purchase",
        "type": "table { card = string, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": "a customer pays `amount` with `card` (one intent)",
    },
    {
        "key": "scan",
        "type": "table { code = string, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": "a wallet customer pays `amount`: the cashier scans `code` from the phone",
    },
    {
        "key": "preauth",
        "type": "table { card = string, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": (
            "a customer's pre-authorisation (a hold, e.g. at a hotel check-in) of `amount` "
            "on `card` (one intent, a payment step like `purchase`); completed later by a "
            "`complete` step. The firmware needs the `preauth` feature"
        ),
    },
    {
        "key": "batch_close",
        "type": "boolean",
        "default": None,
        "unit": "",
        "meaning": "the cashier closes the batch (totals to the host)",
    },
    {
        "key": "reprint",
        "type": "boolean",
        "default": None,
        "unit": "",
        "meaning": "the cashier asks for a reprint of the last receipt",
    },
    {
        "key": "cancel",
        "type": "boolean",
        "default": None,
        "unit": "",
        "meaning": "the cashier presses cancel (whatever the terminal is doing then)",
    },
    {
        "key": "void",
        "type": "table { sale = integer }",
        "default": None,
        "unit": "",
        "meaning": (
            "the cashier voids (cancels in full) payment step `sale` (1 = the first "
            "purchase or scan step, in time order; with several terminals, of the step's "
            "own terminal), named by the RRN of its approved "
            "charge; skipped when it has none. The firmware needs the `refund` feature"
        ),
    },
    {
        "key": "refund",
        "type": "table { sale = integer, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": (
            "the cashier refunds `amount` (left out: the whole sale) of payment step "
            "`sale`, as for `void`"
        ),
    },
    {
        "key": "complete",
        "type": "table { sale = integer, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": (
            "the cashier completes the hold of payment step `sale` (a `preauth` step) for "
            "`amount` (left out: the whole hold), named by the RRN of the hold; skipped "
            "when it has none. The firmware needs the `preauth` feature"
        ),
    },
    {
        "key": "tip",
        "type": "table { sale = integer, amount = integer }",
        "default": None,
        "unit": "amount in minor units",
        "meaning": (
            "the cashier keys the tip `amount` written on the slip of payment step `sale` "
            "(a `purchase`, or a `preauth` whose completion gets the tip): the sale's "
            "total becomes its amount plus the tip (a later tip replaces it); skipped when "
            "the sale has no approved charge. The firmware needs the `preauth` feature"
        ),
    },
)


def fault_kinds() -> list[dict[str, Any]]:
    out = []
    for kind in sorted(faults.REGISTRY):
        cls: type[Fault] = faults.REGISTRY[kind]
        out.append(
            {
                "kind": kind,
                "layer": cls.LAYER,
                "summary": cls.SUMMARY,
                "params": describe_fields(cls),
            }
        )
    return out


def reference() -> dict[str, Any]:
    """Everything a scenario file may say, as JSON-ready data."""
    return {
        "top_level": describe_fields(Scenario, SKIPPED),
        "tables": {title: describe_fields(cls) for title, cls in TABLES},
        "steps": list(STEP_KEYS),
        "faults": fault_kinds(),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]`"
    if isinstance(value, int):
        return f"`{value}`" if abs(value) < 10_000 else f"`{value:_}`"
    return f"`{value}`"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| key | type | default | unit | meaning |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| `{r['key']}` | {r['type']} | {_cell(r['default'])} | {r['unit'] or '-'} "
            f"| {r['meaning']} |"
        )
    return out


def render_markdown() -> str:
    ref = reference()
    lines = [
        "# Scenario format reference",
        "",
        "<!-- Generated by `python -m harness.docgen` from the dataclasses the loader",
        "     builds; a test fails when this page and the code disagree. Do not edit. -->",
        "",
        "A scenario is a TOML file. Every key below is optional unless it says otherwise;",
        "an unknown key is an error that names the file and the key. Money is always an",
        "integer in minor units (1250 = 12.50). Times are virtual milliseconds. The same",
        "data, as JSON, is printed by `posharness list --json` (key `format`).",
        "",
        "## Top level",
        "",
        *_table(ref["top_level"]),
    ]
    for title, rows in ref["tables"].items():
        lines += ["", f"## `{title}`", "", *_table(rows)]
    lines += [
        "",
        "## `[[terminals]]`",
        "",
        "A world of several terminals on one host (at most 16): one entry per terminal,",
        "each with an `id` and any key of `[terminal]`, whose table gives the defaults.",
        "`name` (default: the id) is how steps and faults address it (`terminal = NAME`);",
        "`firmware` runs another firmware there. Two entries with one `id` are two",
        "devices provisioned as one terminal (a clone): each needs a `name`. Without",
        "`[[terminals]]` a scenario has the one terminal `[terminal]` describes.",
        "",
        "## `[[steps]]`",
        "",
        "Each step has `at_ms`, optionally `terminal`, `repeat` and `every_ms`, and exactly",
        "one of the other keys.",
        "",
        *_table(ref["steps"]),
        "",
        "## `[[faults]]`",
        "",
        "Each fault is a table with one key, the fault kind, whose value is a table of",
        'parameters: `drop = { direction = "to_terminal", mti = "0210", nth = 1 }`.',
        "Every kind takes the trigger keys `from_ms`, `to_ms`, `nth`, `count`,",
        "`optional` and `terminal`; the tables below list them with each kind's own",
        "parameters.",
    ]
    for fk in ref["faults"]:
        lines += [
            "",
            f"### `{fk['kind']}` ({fk['layer']})",
            "",
            f"{fk['summary'][:1].upper()}{fk['summary'][1:]}.",
            "",
            *_table(fk["params"]),
        ]
    return "\n".join(lines) + "\n"


def undocumented() -> list[str]:
    """`where.key` for every key without a meaning (the test wants none)."""
    ref = reference()
    out = [f"top.{r['key']}" for r in ref["top_level"] if r["meaning"] == UNDOCUMENTED]
    for title, rows in ref["tables"].items():
        out += [f"{title}.{r['key']}" for r in rows if r["meaning"] == UNDOCUMENTED]
    for fk in ref["faults"]:
        out += [f"{fk['kind']}.{r['key']}" for r in fk["params"] if r["meaning"] == UNDOCUMENTED]
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.docgen` rewrites the page; `--check` exits 1 if it drifted."""
    args = sys.argv[1:] if argv is None else argv
    text = render_markdown()
    if args == ["--check"]:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH}: out of date; run python -m harness.docgen", file=sys.stderr)
            return 1
        return 0
    if args:
        print("usage: python -m harness.docgen [--check]", file=sys.stderr)
        return 2
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
