"""Fault kinds: data with checked parameters, counted triggers, pure transformations."""

from __future__ import annotations

import pytest

import faults
from acquirer.protocol import Message, sign, verify
from faults.base import FaultSpecError, FaultState
from faults.network import Corrupt, Delay, Drop, Duplicate, Reorder


def msg() -> Message:
    return Message(mti="0210", terminal_id="T1", merchant_id="M1", stan=7, amount=100, rc="00")


def test_every_kind_builds_from_an_empty_table_or_says_what_is_missing() -> None:
    for kind in faults.REGISTRY:
        try:
            f = faults.build_fault(kind, {})
        except FaultSpecError as exc:
            assert ":" in str(exc)  # names the field
        else:
            assert kind == f.KIND and f.SUMMARY


def test_nth_and_count_pick_exactly_the_matching_items() -> None:
    state = FaultState(faults.build_fault("drop", {"nth": 2, "count": 2}))
    assert [state.hit(0) for _ in range(5)] == [False, True, True, False, False]


def test_nth_zero_means_every_item_in_the_window() -> None:
    state = FaultState(faults.build_fault("drop", {"from_ms": 10, "to_ms": 20}))
    assert [state.hit(t) for t in (5, 10, 19, 20)] == [False, True, True, False]


def test_network_transformations() -> None:
    d = [(0, msg())]
    assert Drop().apply(d) == []
    assert Delay(delay_ms=5).apply(d) == [(5, msg())]
    assert [x for x, _ in Duplicate(gap_ms=3).apply(d)] == [0, 3]
    assert Reorder(hold_ms=9).apply(d)[0][0] == 9


def test_corrupt_breaks_the_mac_of_a_signed_message() -> None:
    key = b"k"
    signed = sign(msg(), key)
    for field in ("amount", "stan", "mac", "rc", "mti"):
        ((_, damaged),) = Corrupt(field=field).apply([(0, signed)])
        assert damaged != signed
        assert not verify(damaged, key)


@pytest.mark.parametrize(
    ("kind", "table", "fragment"),
    [
        ("power_cut", {}, "at_ms/after"),
        ("power_cut", {"after": "send"}, "nth"),
        ("partition", {"from_ms": 5}, "to_ms"),
        ("rc_burst", {"rc": "00"}, "rc"),
        ("clock_skew", {"drift_ppm": 10_000_000}, "drift_ppm"),
        ("drop", {"mti": "210"}, "mti"),
        ("drop", {"nope": 1}, "nope: unknown parameter"),
        ("delay", {"delay_ms": True}, "delay_ms: expected an integer"),
    ],
)
def test_bad_parameters_are_refused_with_the_field_named(
    kind: str, table: dict[str, object], fragment: str
) -> None:
    with pytest.raises(FaultSpecError, match=fragment):
        faults.build_fault(kind, table)


def test_to_table_round_trips() -> None:
    for kind, cls in faults.REGISTRY.items():
        table = {"from_ms": 5, "to_ms": 50, "nth": 1}
        if kind == "power_cut":
            table = {"at_ms": 5}
        f = faults.build_fault(kind, table)
        assert faults.build_fault(kind, f.to_table()) == f
        assert isinstance(f, cls)
