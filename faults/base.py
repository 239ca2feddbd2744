"""What every fault kind shares: trigger fields, the registry, and the rule for parsing.

A fault is data: a frozen dataclass whose fields are its parameters and its trigger.
Two kinds of trigger, which combine:

* a virtual-time window, `from_ms` <= t < `to_ms` (`to_ms = -1`: no end);
* a matcher over the items the fault looks at (messages, print jobs, taps,
  purchases): the `nth` matching item and the `count - 1` after it. `nth = 0`
  means every matching item inside the window ("fail everything for a while").

The runtime state of a fault (how many items it has seen) lives in `FaultState`,
outside the frozen spec, so one plan can drive many runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from acquirer.protocol import ALL_MTIS

# A plan holds at most this many faults: a limit on everything that can grow.
PLAN_FAULTS_MAX = 256


class FaultSpecError(ValueError):
    """A fault's parameters are wrong. The message names the field."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Base of every fault kind. Subclasses add parameters and set KIND and LAYER."""

    KIND: ClassVar[str] = ""
    LAYER: ClassVar[str] = ""  # network | host | printer | reader | keypad | power | clock
    SUMMARY: ClassVar[str] = ""
    # False for a defect outside the firmware under test (a host bug): it breaks
    # invariants whatever the firmware does, so swarm plans and fuzzing never draw
    # it and the built-in suite need not cover it; imported incidents use it.
    SWARM: ClassVar[bool] = True
    # A firmware feature the fault only makes sense with ("wallet"): swarm plans draw
    # it only for scenarios that use it (see `swarm_kinds`).
    NEEDS: ClassVar[str] = ""

    from_ms: int = 0
    to_ms: int = -1
    nth: int = 0
    count: int = 1
    # A fault that never applies tests nothing, so a run reports it as a failure
    # (a typo in `mti`, an `nth` beyond the matches). `optional = true` allows it:
    # for faults that may or may not meet their trigger, by design.
    optional: bool = False
    # In a world of several terminals: the one whose messages, devices or power the
    # fault acts on, by its name ("": the first).
    terminal: str = ""

    def check(self) -> None:
        """Raise FaultSpecError naming the first bad field."""
        mti = getattr(self, "mti", "")
        if mti and mti not in ALL_MTIS:
            raise FaultSpecError(
                f"mti: {mti!r} is not a message type of the protocol "
                f"(known: {', '.join(sorted(ALL_MTIS))})"
            )
        if self.from_ms < 0:
            raise FaultSpecError("from_ms: must be >= 0")
        if self.to_ms != -1 and self.to_ms < self.from_ms:
            raise FaultSpecError("to_ms: must be >= from_ms (or -1 for no end)")
        if self.nth < 0:
            raise FaultSpecError("nth: must be >= 0 (0 means every match in the window)")
        if self.count < 1:
            raise FaultSpecError("count: must be >= 1")
        # Every other duration (units last: *_ms) is a non-negative amount of time;
        # at_ms and to_ms use -1 for "not set" and are checked where they matter.
        for f in dataclasses.fields(self):
            duration = f.name.endswith("_ms") and f.name not in ("at_ms", "to_ms", "from_ms")
            if duration and getattr(self, f.name) < 0:
                raise FaultSpecError(f"{f.name}: must be >= 0")

    def in_window(self, now_ms: int) -> bool:
        return now_ms >= self.from_ms and (self.to_ms == -1 or now_ms < self.to_ms)

    def to_table(self) -> dict[str, Any]:
        """The fault as scenario data: only fields that differ from their defaults."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.to_table().items())
        return f"{self.KIND}({params})"


class FaultState:
    """How many matching items one fault has seen in one run."""

    __slots__ = ("fault", "fired", "seen")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen = 0
        self.fired = 0

    def hit(self, now_ms: int) -> bool:
        """Count one matching item at `now_ms`; True when the fault applies to it."""
        f = self.fault
        if not f.in_window(now_ms):
            return False
        self.seen += 1
        applies = f.nth == 0 or f.nth <= self.seen < f.nth + f.count
        if applies:
            self.fired += 1
        return applies


REGISTRY: dict[str, type[Fault]] = {}


def swarm_kinds(features: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The kinds a random plan may draw (see Fault.SWARM), sorted; kinds that need a
    feature (Fault.NEEDS) only when it is in `features`."""
    return tuple(
        sorted(
            k
            for k, cls in REGISTRY.items()
            if cls.SWARM and (not cls.NEEDS or cls.NEEDS in features)
        )
    )


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make a fault kind known by its KIND name."""
    if not cls.KIND or cls.KIND in REGISTRY:
        raise RuntimeError(f"fault kind {cls.KIND!r} missing or registered twice")
    REGISTRY[cls.KIND] = cls
    return cls


def toml_value(value: Any) -> str:
    """`value` as it reads in a TOML file: `true`, `"0210"`, `[1, 2]`, `{ nth = 1 }`
    (an error message quotes what the user wrote, not Python's `True` or `'0210'`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return str(value)


def _type_name(tp: Any) -> str:
    return {int: "an integer", str: "a string", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def build_fault(kind: str, table: Any) -> Fault:
    """Build a fault of `kind` from a TOML table. Raises FaultSpecError("field: problem")."""
    cls = REGISTRY.get(kind)
    if cls is None:
        raise FaultSpecError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(REGISTRY))})")
    if not isinstance(table, dict):
        raise FaultSpecError("must be a table, e.g. { nth = 1 }")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        f = hints.get(key)
        if f is None:
            raise FaultSpecError(f"{key}: unknown parameter (known: {', '.join(sorted(hints))})")
        expected = _FIELD_TYPES[cls].get(key, type(f.default))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise FaultSpecError(f"{key}: expected {_type_name(expected)}, got {toml_value(value)}")
        kwargs[key] = value
    fault = cls(**kwargs)
    fault.check()
    return fault


# Field types per class, computed once from the defaults (all fields have defaults).
class _FieldTypes(dict[type[Fault], dict[str, type]]):
    def __missing__(self, cls: type[Fault]) -> dict[str, type]:
        types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        self[cls] = types
        return types


_FIELD_TYPES = _FieldTypes()
