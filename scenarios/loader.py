"""Load scenario files (TOML) into frozen `Scenario` data, strictly.

Every problem becomes one `ScenarioError` line naming the file, the key and what is
wrong: `scenarios/x.toml: faults[0].drop.nth: must be >= 0`. Unknown keys are errors
(a typo must not silently turn a fault off).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import faults
from faults.base import PLAN_FAULTS_MAX, FaultSpecError, toml_value

from .credits import CREDIT_ACTIONS, check_credit_steps, credit_step
from .files import FileRefused, read_bounded
from .model import (
    AT_MS_MAX,
    CARDS_MAX,
    CHIP_BEHAVIOURS,
    INVARIANT_NAMES,
    STEPS_MAX,
    TERMINALS_MAX,
    CardSpec,
    Expect,
    HostSpec,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    ScenarioError,
    Step,
    TerminalSpec,
    WalletSpec,
)

T = TypeVar("T")

TOP_KEYS = (
    "name",
    "description",
    "seed",
    "firmware",
    "terminal",
    "host",
    "network",
    "people",
    "cards",
    "wallets",
    "steps",
    "faults",
    "expect",
    "close_batch",
    "max_ms",
    "terminals",
)
STEP_ACTIONS = (
    "purchase",
    "scan",
    "preauth",
    "batch_close",
    "reprint",
    "cancel",
    "void",
    "refund",
    "complete",
    "tip",
)
# A scenario file larger than this is not a scenario, it is a mistake.
FILE_BYTES_MAX = 8 * 1024 * 1024

# Bounds on numbers, so that a short file can neither overflow the host's 64-bit
# integers nor ask for hours of work (`response_timeout_ms = 0` with `max_sends =
# 1000000000` once ran 132 s and took 1 GB). Every other integer is bounded by
# INT_MAX, and every other *_ms by the longest scenario (AT_MS_MAX).
INT_MAX = 2**63 - 1
MONEY_MAX = 10**12  # minor units: sums over CARDS_MAX cards stay far inside int64
BOUNDS: dict[str, tuple[int, int]] = {
    "balance": (0, MONEY_MAX),
    "amount_max": (0, MONEY_MAX),
    "response_timeout_ms": (100, 3_600_000),
    "max_sends": (1, 100),
    "reversal_max_tries": (1, 10_000),
    "retry_on_failed": (0, 100),
    "reprints_max": (0, 100),
}
AMOUNT_MIN, AMOUNT_MAX = -MONEY_MAX, MONEY_MAX


def _tname(tp: type) -> str:
    return {
        int: "an integer",
        str: "a string",
        bool: "true or false",
        float: "a number",
    }.get(tp, tp.__name__)


def _expect_type(where: str, value: Any, tp: type) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not tp:
        raise ScenarioError(f"{where}: expected {_tname(tp)}, got {toml_value(value)}")
    return value


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a table, got {toml_value(value)}")
    return value


# Offline approval limits: a queue the terminal can hold, a deadline of one minute to a week.
OFFLINE_MAX_MAX = 100
OFFLINE_DEADLINE_MS_RANGE = (60_000, 7 * 86_400_000)


def offline_problem(t: TerminalSpec) -> str:
    """Why `[terminal]`'s offline settings are unusable ("" when they are fine)."""
    if t.offline_floor < 0:
        return "terminal.offline_floor: must be >= 0 (0: never approve offline)"
    if t.offline_floor and t.partial_approval:
        # An advice books what was approved offline in full: no partial approval.
        return (
            "terminal.offline_floor: a terminal that approves offline cannot take partial approvals"
        )
    if not 1 <= t.offline_max <= OFFLINE_MAX_MAX:
        return f"terminal.offline_max: must be 1-{OFFLINE_MAX_MAX}, got {t.offline_max}"
    low, high = OFFLINE_DEADLINE_MS_RANGE
    if not low <= t.offline_deadline_ms <= high:
        return f"terminal.offline_deadline_ms: must be {low}-{high}, got {t.offline_deadline_ms}"
    return ""


def _section(where: str, data: Any, cls: type[T]) -> T:
    """Build a flat dataclass from a table, checking names, types and signs."""
    table = _table(where, data)
    flds = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        f = flds.get(key)
        if f is None:
            raise ScenarioError(f"{where}.{key}: unknown key (known: {', '.join(sorted(flds))})")
        default = f.default
        value = _expect_type(f"{where}.{key}", value, type(default))
        counts = key.endswith("_ms") or key in ("balance", "max_sends", "amount_max")
        if counts and type(value) is int and value < 0:
            raise ScenarioError(f"{where}.{key}: must be >= 0, got {value}")
        if type(value) is int:
            low, high = BOUNDS.get(key, (-INT_MAX, AT_MS_MAX if key.endswith("_ms") else INT_MAX))
            if not low <= value <= high:
                raise ScenarioError(f"{where}.{key}: must be between {low} and {high}, got {value}")
        kwargs[key] = value
    return cls(**kwargs)


def _card(where: str, data: Any) -> CardSpec:
    card = _section(where, data, CardSpec) if "pan" in _table(where, data) else None
    if card is None:
        raise ScenarioError(f"{where}.pan: missing")
    if not (12 <= len(card.pan) <= 19) or not card.pan.isdigit():
        raise ScenarioError(f"{where}.pan: must be 12-19 digits, got {card.pan!r}")
    if card.chip not in CHIP_BEHAVIOURS:
        raise ScenarioError(f'{where}.chip: must be "decline" or "removed", got {card.chip!r}')
    return card


def _wallet(where: str, data: Any) -> WalletSpec:
    if "code" not in _table(where, data):
        raise ScenarioError(f"{where}.code: missing")
    wallet = _section(where, data, WalletSpec)
    if not (12 <= len(wallet.code) <= 19) or not wallet.code.isdigit():
        raise ScenarioError(f"{where}.code: must be 12-19 digits, got {wallet.code!r}")
    for key in ("rc", "answer_rc"):
        value = getattr(wallet, key)
        if value and not (len(value) == 2 and value.isascii() and value.isalnum()):
            raise ScenarioError(f"{where}.{key}: must be 2 letters or digits, got {value!r}")
    return wallet


_STEP_OPTIONS = ("at_ms", "terminal", "repeat", "every_ms")


def _steps(raw: list[Any], pans: set[str], codes: Iterable[str]) -> tuple[Step, ...]:
    """Every step of the file, a repeated one (`repeat`, `every_ms`) written out."""
    out: list[Step] = []
    for i, data in enumerate(raw):
        where = f"steps[{i}]"
        step = _step(where, data, pans, codes)
        repeat, every_ms = _repeat(where, data)
        if len(out) + repeat > STEPS_MAX:
            raise ScenarioError(f"{where}.repeat: more than {STEPS_MAX} steps in all")
        if step.at_ms + (repeat - 1) * every_ms > AT_MS_MAX:
            raise ScenarioError(f"{where}.repeat: the last one would be after {AT_MS_MAX} ms")
        out.append(step)
        out += (_at(step, step.at_ms + k * every_ms) for k in range(1, repeat))
    return tuple(out)


def _at(step: Step, at_ms: int) -> Step:
    return dataclasses.replace(step, at_ms=at_ms)


def _repeat(where: str, table: dict[str, Any]) -> tuple[int, int]:
    """(times, interval) of a step: `repeat = N` happens N times, `every_ms` apart."""
    repeat = _expect_type(f"{where}.repeat", table.get("repeat", 1), int)
    every_ms = _expect_type(f"{where}.every_ms", table.get("every_ms", 0), int)
    if not 1 <= repeat <= STEPS_MAX:
        raise ScenarioError(f"{where}.repeat: must be between 1 and {STEPS_MAX}, got {repeat}")
    if repeat == 1 and "every_ms" in table:
        raise ScenarioError(f"{where}.every_ms: only with repeat (> 1)")
    if repeat > 1 and not 1 <= every_ms <= AT_MS_MAX:
        raise ScenarioError(
            f"{where}.every_ms: must be between 1 and {AT_MS_MAX} with repeat, got {every_ms}"
        )
    return repeat, every_ms


def _step(where: str, data: Any, pans: set[str], codes: Iterable[str] = ()) -> Step:
    table = _table(where, data)
    for key in table:
        if key not in _STEP_OPTIONS and key not in STEP_ACTIONS:
            raise ScenarioError(
                f"{where}.{key}: unknown key (a step has at_ms, optionally terminal, repeat "
                f"and every_ms, and one of {', '.join(STEP_ACTIONS)})"
            )
    terminal = _expect_type(f"{where}.terminal", table.get("terminal", ""), str)
    step = _step_action(where, table, pans, codes)
    return dataclasses.replace(step, terminal=terminal) if terminal else step


def _step_action(where: str, table: dict[str, Any], pans: set[str], codes: Iterable[str]) -> Step:
    if "at_ms" not in table:
        raise ScenarioError(f"{where}.at_ms: missing")
    at_ms = _expect_type(f"{where}.at_ms", table["at_ms"], int)
    if not (0 <= at_ms <= AT_MS_MAX):
        raise ScenarioError(f"{where}.at_ms: must be between 0 and {AT_MS_MAX}, got {at_ms}")
    actions = [k for k in STEP_ACTIONS if k in table]
    if len(actions) != 1:
        raise ScenarioError(f"{where}: needs exactly one of {', '.join(STEP_ACTIONS)}")
    action = actions[0]
    if action == "purchase" or action == "preauth":
        return _payment(where, at_ms, table, action, "card", pans, "[[cards]]")
    if action == "scan":
        return _payment(where, at_ms, table, "scan", "code", codes, "[[wallets]]")
    if action in CREDIT_ACTIONS:
        return credit_step(where, at_ms, table, action)
    if table[action] is not True:
        raise ScenarioError(f"{where}.{action}: expected true")
    return Step(at_ms=at_ms, action=action)


def _payment(
    where: str,
    at_ms: int,
    table: dict[str, Any],
    action: str,
    who: str,
    known: Iterable[str],
    listed_in: str,
) -> Step:
    """A purchase or pre-authorisation (`who` = "card") or a wallet scan (`who` =
    "code") step."""
    here = f"{where}.{action}"
    p = _table(here, table[action])
    for key in p:
        if key not in (who, "amount"):
            raise ScenarioError(f"{here}.{key}: unknown key (known: amount, {who})")
    for key in (who, "amount"):
        if key not in p:
            raise ScenarioError(f"{here}.{key}: missing")
    card = _expect_type(f"{here}.{who}", p[who], str)
    amount = _expect_type(f"{here}.amount", p["amount"], int)
    if not AMOUNT_MIN <= amount <= AMOUNT_MAX:
        raise ScenarioError(
            f"{here}.amount: must be between {AMOUNT_MIN} and {AMOUNT_MAX}, got {amount}"
        )
    if card not in known:
        raise ScenarioError(f"{here}.{who}: {card!r} is not in {listed_in}")
    return Step(at_ms=at_ms, action=action, card=card, amount=amount)


def _fault(where: str, data: Any) -> faults.Fault:
    table = _table(where, data)
    if len(table) != 1:
        raise ScenarioError(f"{where}: needs exactly one fault kind, e.g. drop = {{ nth = 1 }}")
    ((kind, params),) = table.items()
    try:
        return faults.build_fault(kind, params)
    except FaultSpecError as exc:
        if str(exc).startswith("unknown fault kind"):
            raise ScenarioError(f"{where}: {exc}") from None
        raise ScenarioError(f"{where}.{kind}.{exc}") from None


def _names(where: str, value: Any) -> tuple[str, ...]:
    if value == "all":
        return INVARIANT_NAMES
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f'{where}: expected "all" or a list of invariant names')
    for name in value:
        if name not in INVARIANT_NAMES:
            raise ScenarioError(
                f"{where}: unknown invariant {name!r} (known: {', '.join(INVARIANT_NAMES)})"
            )
    return tuple(value)


def _expect(where: str, data: Any) -> Expect:
    table = _table(where, data)
    for key in table:
        if key not in ("invariants", "violated", "settle_within_ms"):
            raise ScenarioError(
                f"{where}.{key}: unknown key (known: invariants, settle_within_ms, violated)"
            )
    violated = _names(f"{where}.violated", table.get("violated", []))
    default = tuple(n for n in INVARIANT_NAMES if n not in violated)
    invariants = _names(f"{where}.invariants", table.get("invariants", "all"))
    if "invariants" not in table or table.get("invariants") == "all":
        invariants = default
    clash = sorted(set(invariants) & set(violated))
    if clash:
        raise ScenarioError(f"{where}: {clash[0]!r} is both expected to hold and to be violated")
    settle = _expect_type(f"{where}.settle_within_ms", table.get("settle_within_ms", 120_000), int)
    if settle < 0:
        raise ScenarioError(f"{where}.settle_within_ms: must be >= 0")
    return Expect(invariants=invariants, violated=violated, settle_within_ms=settle)


def _list(where: str, value: Any, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(f"{where}: expected an array of tables ([[{where}]])")
    if len(value) > limit:
        raise ScenarioError(f"{where}: at most {limit} entries, got {len(value)}")
    return value


def scenario_from_dict(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Check `data` (parsed TOML) and build a Scenario. Raises ScenarioError."""
    try:
        return _from_dict(data, source)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _from_dict(data: dict[str, Any], source: str) -> Scenario:
    for key in data:
        if key not in TOP_KEYS:
            raise ScenarioError(f"{key}: unknown key (known: {', '.join(TOP_KEYS)})")
    if "name" not in data:
        raise ScenarioError("name: missing")
    name = _expect_type("name", data["name"], str)
    if not name or len(name) > 200:
        raise ScenarioError("name: must be 1-200 characters")
    seed = _expect_type("seed", data.get("seed", 0), int)
    if not (0 <= seed < 2**63):
        raise ScenarioError("seed: must be between 0 and 2**63-1")
    cards = tuple(
        _card(f"cards[{i}]", c)
        for i, c in enumerate(_list("cards", data.get("cards", []), CARDS_MAX))
    )
    from acquirer.catalogue import CATALOGUE_CARDS, CATALOGUE_WALLETS

    pans = {c.pan for c in cards} | {c.pan for c in CATALOGUE_CARDS}
    wallets = tuple(
        _wallet(f"wallets[{i}]", w)
        for i, w in enumerate(_list("wallets", data.get("wallets", []), CARDS_MAX))
    )
    codes = {w.code for w in wallets} | {w.pan for w in CATALOGUE_WALLETS}
    seen: set[str] = set()
    for i, c in enumerate(cards):
        if c.pan in seen:
            raise ScenarioError(f"cards[{i}].pan: {c.pan} is listed twice")
        seen.add(c.pan)
    for i, w in enumerate(wallets):
        if w.code in pans:
            raise ScenarioError(f"wallets[{i}].code: {w.code} is also a card")
        if w.code in seen:
            raise ScenarioError(f"wallets[{i}].code: {w.code} is listed twice")
        seen.add(w.code)
    steps = _steps(_list("steps", data.get("steps", []), STEPS_MAX), pans, codes)
    plan = tuple(
        _fault(f"faults[{i}]", f)
        for i, f in enumerate(_list("faults", data.get("faults", []), PLAN_FAULTS_MAX))
    )
    max_ms = _expect_type("max_ms", data.get("max_ms", -1), int)
    if max_ms < -1:
        raise ScenarioError("max_ms: must be >= 0 (or -1 for the default)")
    steps = tuple(sorted(steps, key=lambda s: s.at_ms))
    terminal = _terminal("terminal", data.get("terminal", {}), {})
    for key in ("name", "firmware"):
        if getattr(terminal, key):
            raise ScenarioError(f"terminal.{key}: only a [[terminals]] entry has a {key}")
    terminals = _terminals(data, terminal)
    lanes = {t.lane: t for t in terminals or (terminal,)}
    first = next(iter(lanes))
    for i, st in enumerate(steps):
        if st.terminal and st.terminal not in lanes:
            raise ScenarioError(f"steps[{i}].terminal: {_no_lane(st.terminal, lanes)}")
    check_credit_steps(steps, first, bool(terminals))
    for t in terminals or (terminal,):
        offline = offline_problem(t)
        if offline:
            raise ScenarioError(offline)
    for i, f in enumerate(plan):
        if f.terminal and f.terminal not in lanes:
            raise ScenarioError(f"faults[{i}].{f.KIND}.terminal: {_no_lane(f.terminal, lanes)}")
        if f.LAYER == "chip" and not lanes[f.terminal or first].chip:
            raise ScenarioError(
                f"faults[{i}]: {f.KIND} needs a chip terminal ([terminal] chip = true)"
            )
    return Scenario(
        name=name,
        description=_expect_type("description", data.get("description", ""), str),
        seed=seed,
        firmware=_expect_type("firmware", data.get("firmware", "reference"), str),
        terminal=terminal,
        host=_section("host", data.get("host", {}), HostSpec),
        network=_section("network", data.get("network", {}), NetworkSpec),
        people=_section("people", data.get("people", {}), PeopleSpec),
        cards=cards,
        wallets=wallets,
        steps=steps,
        faults=plan,
        expect=_expect("expect", data.get("expect", {})),
        close_batch=_expect_type("close_batch", data.get("close_batch", True), bool),
        max_ms=max_ms,
        source=source,
        terminals=terminals,
    )


def _terminal(where: str, data: Any, defaults: dict[str, Any]) -> TerminalSpec:
    """One terminal's table, over `defaults` (the [terminal] table, for [[terminals]])."""
    t = _section(where, {**defaults, **_table(where, data)}, TerminalSpec)
    if not (1 <= len(t.id) <= 8) or not t.id.isalnum():
        raise ScenarioError(f"{where}.id: must be 1-8 letters or digits, got {t.id!r}")
    if t.name and (len(t.name) > 16 or not t.name.replace("-", "").isalnum()):
        raise ScenarioError(f"{where}.name: must be 1-16 letters, digits or '-', got {t.name!r}")
    if t.max_sends < 1:
        raise ScenarioError(f"{where}.max_sends: must be >= 1")
    return t


def _terminals(data: dict[str, Any], terminal: TerminalSpec) -> tuple[TerminalSpec, ...]:
    """The [[terminals]] of a world of several, each over the [terminal] table."""
    if "terminals" not in data:
        return ()
    entries = _list("terminals", data["terminals"], TERMINALS_MAX)
    if not entries:
        raise ScenarioError("terminals: give at least one terminal (or leave the key out)")
    defaults = _table("terminal", data.get("terminal", {}))
    out: list[TerminalSpec] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"terminals[{i}]"
        if "id" not in _table(where, entry):
            raise ScenarioError(f"{where}.id: missing")
        t = _terminal(where, entry, defaults)
        if t.lane in names:
            raise ScenarioError(
                f"{where}: a second terminal named {t.lane!r} (a clone of a terminal id "
                'needs a name of its own: name = "...")'
            )
        names.add(t.lane)
        out.append(t)
    return tuple(out)


def _no_lane(name: str, lanes: dict[str, TerminalSpec]) -> str:
    return f"no terminal named {name!r} (known: {', '.join(lanes)})"


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file. Raises ScenarioError (one line) on any problem."""
    p = Path(path)
    try:
        raw = read_bounded(p, FILE_BYTES_MAX)
    except FileRefused as exc:
        raise ScenarioError(str(exc)) from None
    try:
        # "utf-8-sig": a byte-order mark (Windows editors write one) is not TOML.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses per nesting level: `a = [[[[...]]]]` 100,000 deep.
        raise ScenarioError(f"{p}: nested too deeply to be a scenario") from None
    return scenario_from_dict(data, str(p))


def find_scenarios(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Scenario files under `paths` (files as given, directories searched), sorted."""
    for path in paths:
        p = Path(path)
        try:
            if p.is_dir():
                yield from sorted(p.rglob("*.toml"))
            elif p.exists():
                yield p
            else:
                raise ScenarioError(f"{p}: no such file or directory")
        except OSError as exc:  # an unreadable parent directory, a dangling mount...
            raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from None
