"""Hypothesis strategies that draw whole scenarios: cards, purchases, people, faults.

Public API for firmware teams:

    from hypothesis import given
    from harness.strategies import scenarios
    from harness.check import assert_invariants

    @given(scenarios())
    def test_my_firmware(sc):
        assert_invariants(sc, "mypkg.fw:MyFirmware")

Swarm mode (TigerBeetle's `options_swarm`): each example first draws which fault
kinds are switched on, then draws the faults from those kinds only, so examples
range from "only printer trouble" to "everything at once" and rare combinations
are reached. A drawn scenario is plain data: it can always be written as a file.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

import faults
from faults.base import Fault
from scenarios.model import (
    INVARIANT_NAMES,
    CardSpec,
    Expect,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    Step,
)

# Kept small so shrunk scenarios read well and examples stay fast.
PURCHASES_MAX = 10
FAULTS_MAX = 6
CARD_PANS = ("4000000000000002", "4000000000000010", "4000000000000028")

# Amounts worth trying: edges of validation, binary-float traps, test-card magic
# amounts (500 = RC 05, 5100 = RC 51, 9800 = approve-without-reply ...), big ones.
EDGE_AMOUNTS = (1, 29, 99, 100, 435, 500, 1300, 5100, 9100, 9600, 9800, 9900, 99_999_999)


@functools.cache
def amounts() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EDGE_AMOUNTS), st.integers(1, 50_000))


def _mti(direction: str) -> st.SearchStrategy[str]:
    if direction == "to_host":
        return st.sampled_from(["", "0200", "0400", "0500"])
    if direction == "to_terminal":
        return st.sampled_from(["", "0210", "0410", "0510"])
    return st.sampled_from(["", "0200", "0210", "0400", "0410"])


def _trigger() -> st.SearchStrategy[dict[str, int]]:
    """Mostly "the nth matching item" (what shrinks to a readable story), sometimes
    a time window."""
    nth = st.fixed_dictionaries({"nth": st.integers(1, 4), "count": st.integers(1, 3)})
    window = st.integers(0, 120_000).flatmap(
        lambda start: st.fixed_dictionaries(
            {"from_ms": st.just(start), "to_ms": st.integers(start + 1, start + 60_000)}
        )
    )
    return st.one_of(nth, window)


def _network_towards(
    kind: str, direction: str, extra: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(_trigger(), _mti(direction), st.fixed_dictionaries(extra)).map(
        lambda t: {**t[0], "direction": direction, **({"mti": t[1]} if t[1] else {}), **t[2]}
    )


def _network(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    extra: dict[str, st.SearchStrategy[Any]] = {}
    if kind == "delay":
        extra["delay_ms"] = st.sampled_from([500, 5_000, 16_000, 20_000, 40_000])
    elif kind == "duplicate":
        extra["gap_ms"] = st.integers(0, 2_000)
    elif kind == "reorder":
        extra["hold_ms"] = st.integers(1, 20_000)
    elif kind == "corrupt":
        extra["field"] = st.sampled_from(["amount", "stan", "mac", "rc", "mti"])
    return st.one_of(
        _network_towards(kind, "to_host", extra), _network_towards(kind, "to_terminal", extra)
    )


def _params(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    if kind in ("drop", "delay", "duplicate", "reorder", "corrupt"):
        return _network(kind)
    if kind == "partition":
        return st.integers(0, 120_000).flatmap(
            lambda s: st.fixed_dictionaries(
                {"from_ms": st.just(s), "to_ms": st.integers(s + 1, s + 90_000)}
            )
        )
    nth = st.fixed_dictionaries({"nth": st.integers(1, 4)})
    if kind == "forge":
        return st.fixed_dictionaries({"nth": st.integers(1, 4), "delay_ms": st.integers(0, 500)})
    if kind == "host_crash":
        return st.fixed_dictionaries(
            {
                "nth": st.integers(1, 4),
                "mti": st.sampled_from(["0200", "0400"]),
                "when": st.sampled_from(["after_commit", "before_commit"]),
                "down_ms": st.integers(0, 30_000),
            }
        )
    if kind == "slow_host":
        return st.fixed_dictionaries(
            {"nth": st.integers(1, 4), "extra_ms": st.sampled_from([1_000, 16_000, 25_000, 40_000])}
        )
    if kind == "rc_burst":
        return st.fixed_dictionaries(
            {
                "nth": st.integers(1, 4),
                "count": st.integers(1, 4),
                "rc": st.sampled_from(["91", "96"]),
            }
        )
    if kind == "paper_out":
        return st.integers(0, 60_000).flatmap(
            lambda s: st.fixed_dictionaries(
                {"from_ms": st.just(s), "to_ms": st.integers(s + 1, s + 30_000)}
            )
        )
    if kind in ("double_tap", "double_confirm"):
        return st.fixed_dictionaries({"nth": st.integers(1, 4), "gap_ms": st.integers(0, 3_000)})
    if kind == "keying_error":
        return st.fixed_dictionaries(
            {"nth": st.integers(1, 4), "amount": st.sampled_from([0, -100, 10**12, 12_500])}
        )
    if kind == "power_cut":
        at = st.fixed_dictionaries(
            {"at_ms": st.integers(0, 120_000), "off_ms": st.integers(0, 20_000)}
        )
        after = st.fixed_dictionaries(
            {
                "after": st.sampled_from(["send", "receive", "journal", "print"]),
                "nth": st.integers(1, 6),
                "off_ms": st.integers(0, 20_000),
            }
        )
        # Right after a request leaves: the moment that decides whether a sale is
        # repeated, reversed or forgotten after the reboot.
        after_send = st.fixed_dictionaries(
            {
                "after": st.just("send"),
                "mti": st.sampled_from(["0200", "0400"]),
                "nth": st.integers(1, 3),
                "off_ms": st.integers(0, 20_000),
            }
        )
        return st.one_of(at, after, after_send)
    if kind == "clock_skew":
        return st.fixed_dictionaries({"drift_ppm": st.integers(-300_000, 300_000)})
    if kind == "splice":
        return st.fixed_dictionaries(
            {"nth": st.integers(1, 4), "rc": st.sampled_from(["", "00", "05"])}
        )
    if kind == "replay":
        request = st.fixed_dictionaries(
            {
                "leg": st.just("request"),
                "mti": st.sampled_from(["0200", "0400"]),
                "nth": st.integers(1, 4),
                "after_ms": st.sampled_from([1, 2_000, 20_000]),
            }
        )
        answer = st.fixed_dictionaries(
            {
                "leg": st.just("answer"),
                "mti": st.sampled_from(["0210", "0410"]),
                "nth": st.integers(1, 4),
                "after_ms": st.sampled_from([1, 2_000, 20_000]),
            }
        )
        return st.one_of(request, answer)
    if kind == "device_swap":
        return st.fixed_dictionaries(
            {"at_ms": st.integers(0, 60_000), "off_ms": st.integers(0, 5_000)}
        )
    return nth  # printer_jam, print_failure, misread


@functools.cache
def fault_of(kind: str) -> st.SearchStrategy[Fault]:
    return _params(kind).map(lambda params: faults.build_fault(kind, params))


@st.composite
def fault_plans(draw: st.DrawFn, kinds: tuple[str, ...] | None = None) -> tuple[Fault, ...]:
    """Swarm: draw the enabled kinds, then up to FAULTS_MAX faults of those kinds."""
    enabled = draw(_enabled_kinds(tuple(sorted(kinds or faults.swarm_kinds()))))
    if not enabled:
        return ()
    choose = st.sampled_from(sorted(enabled))
    count = draw(_FAULT_COUNT)
    return tuple(draw(fault_of(draw(choose))) for _ in range(count))


_FAULT_COUNT = st.integers(0, FAULTS_MAX)


@functools.cache
def _enabled_kinds(all_kinds: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(all_kinds), min_size=0, max_size=4, unique=True)


# Gaps from "while the previous sale is still in flight" to "a minute later".
_GAPS = st.sampled_from([0, 500, 2_000, 10_000, 30_000, 60_000])
_BATCH_AFTER = st.one_of(st.none(), st.integers(0, 60_000))


@st.composite
def purchase_steps(
    draw: st.DrawFn, pans: tuple[str, ...], purchases: tuple[int, int] = (1, PURCHASES_MAX)
) -> tuple[Step, ...]:
    n = draw(st.integers(*purchases))
    card = st.sampled_from(pans)
    at = 0
    steps = []
    for _ in range(n):
        at += draw(_GAPS)
        steps.append(Step(at_ms=at, action="purchase", card=draw(card), amount=draw(amounts())))
    batch_after = draw(_BATCH_AFTER)
    if batch_after is not None:
        steps.append(Step(at_ms=at + batch_after, action="batch_close"))
    return tuple(sorted(steps, key=lambda s: s.at_ms))


_N_CARDS = st.integers(1, len(CARD_PANS))
_BALANCES = st.sampled_from([100_000_000, 50_000, 3_000])
_RETRIES = st.integers(0, 2)
_LATENCIES = st.sampled_from([5, 40, 400])
_SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def scenarios(
    draw: st.DrawFn,
    firmware: str = "reference",
    kinds: tuple[str, ...] | None = None,
    name: str = "fuzz",
    purchases: tuple[int, int] = (1, PURCHASES_MAX),
) -> Scenario:
    """A whole scenario: cards, purchases, people, network and a swarm fault plan."""
    n_cards = draw(_N_CARDS)
    pans = CARD_PANS[:n_cards]
    cards = tuple(CardSpec(pan=p, balance=draw(_BALANCES)) for p in pans)
    people = PeopleSpec(retry_on_failed=draw(_RETRIES))
    network = NetworkSpec(latency_ms=draw(_LATENCIES))
    return Scenario(
        name=name,
        seed=draw(_SEEDS),
        firmware=firmware,
        network=network,
        people=people,
        cards=cards,
        steps=draw(purchase_steps(pans, purchases)),
        faults=draw(fault_plans(kinds)),
        expect=Expect(invariants=INVARIANT_NAMES),
    )
