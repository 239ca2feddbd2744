"""Hypothesis strategies for fault plans: the swarm and the targeted combinations.

Swarm mode (TigerBeetle's `options_swarm`): each plan first draws which fault kinds
are switched on, then draws the faults from those kinds only, so plans range from
"only printer trouble" to "everything at once" and rare combinations are reached.
Besides the swarm, a plan may start with one of the targeted combinations that real
incidents are made of. `harness.strategies` re-exports what is public here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

import faults
from faults.base import Fault

FAULTS_MAX = 6
_INDEX = st.integers(0, 63)
_REPLAY_AFTER = st.sampled_from([1, 2_000, 20_000, 120_000])


def pick(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    """One of `items` (a draw that shrinks towards the first)."""
    return items[draw(_INDEX) % len(items)]


def _mti(direction: str) -> st.SearchStrategy[str]:
    # The wallet's status inquiry (0600/0610) too: a late "paid" or "not found" is
    # what an inquiry flow must weigh against what it already did.
    if direction == "to_host":
        return st.sampled_from(["", "0200", "0400", "0500", "0600"])
    if direction == "to_terminal":
        return st.sampled_from(["", "0210", "0410", "0510", "0610"])
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
        # 60 s outlasts two sends and the status inquiry at the default timeouts: a
        # copy of a 0200 that lands after the terminal asked about it.
        extra["delay_ms"] = st.sampled_from([500, 5_000, 16_000, 20_000, 40_000, 60_000])
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
        # Mostly up to 90 s; one in eight is a long outage (150-190 s) that outlasts
        # the default settle bound: the terminal must still time out. Not longer: the
        # drawn terminal may give a reversal up after 10 tries (about 250 s, less
        # with a fast clock), and no firmware can reverse through a longer outage.
        return st.tuples(st.integers(0, 120_000), st.integers(0, 7)).flatmap(
            lambda t: st.fixed_dictionaries(
                {
                    "from_ms": st.just(t[0]),
                    "to_ms": st.integers(t[0] + 1, t[0] + 90_000)
                    if t[1]
                    else st.integers(t[0] + 150_000, t[0] + 190_000),
                }
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
        transient = st.fixed_dictionaries(
            {
                "nth": st.integers(1, 4),
                "count": st.integers(1, 4),
                "rc": st.sampled_from(["91", "96"]),
            }
        )
        # A host stuck saying "in progress" (a claim row never finished): the terminal
        # must stop asking and reverse, not wait for ever.
        stuck = st.fixed_dictionaries(
            {
                "mti": st.just("0200"),
                "nth": st.integers(1, 4),
                "count": st.just(100),
                "rc": st.just("09"),
            }
        )
        return st.one_of(transient, stuck)
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
    if kind == "late_confirm":
        return st.fixed_dictionaries(
            {
                "nth": st.integers(1, 3),
                "extra_ms": st.sampled_from([5_000, 25_000, 40_000, 100_000]),
                "never": st.booleans(),
            }
        )
    if kind == "clock_skew":
        return st.fixed_dictionaries({"drift_ppm": st.integers(-300_000, 300_000)})
    if kind == "splice":
        return st.fixed_dictionaries(
            {"nth": st.integers(1, 4), "rc": st.sampled_from(["", "00", "05"])}
        )
    if kind == "replay":
        # Every message type, and replays late enough to land in a later flow (an old
        # batch answer during the next close, an advice answer during a refund).
        request = st.fixed_dictionaries(
            {
                "leg": st.just("request"),
                "mti": st.sampled_from(["0200", "0400", "0220", "0500", "0600"]),
                "nth": st.integers(1, 4),
                "after_ms": _REPLAY_AFTER,
            }
        )
        answer = st.fixed_dictionaries(
            {
                "leg": st.just("answer"),
                "mti": st.sampled_from(["0210", "0410", "0230", "0510", "0610"]),
                "nth": st.integers(1, 4),
                "after_ms": _REPLAY_AFTER,
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


# Targeted combinations: (kinds it needs, the faults as scenario data).
def _combo_device_then_power() -> st.SearchStrategy[tuple[Fault, ...]]:
    """A printer fault, then power goes after the next print or journal write: is
    the receipt still owed after the reboot?"""
    device = st.sampled_from(["printer_jam", "paper_out", "print_failure"]).flatmap(
        lambda k: fault_of(k)
    )
    cut = st.fixed_dictionaries(
        {
            "after": st.sampled_from(["print", "journal", "receive"]),
            "nth": st.integers(1, 4),
            "off_ms": st.sampled_from([0, 1_000, 20_000]),
        }
    ).map(lambda p: faults.build_fault("power_cut", p))
    return st.tuples(device, cut)


def _combo_loss_then_reboot() -> st.SearchStrategy[tuple[Fault, ...]]:
    """A request or answer is lost, and the terminal reboots while it waits."""
    loss = st.sampled_from([("to_terminal", "0210"), ("to_host", "0200"), ("to_terminal", "0410")])
    drop = st.tuples(loss, st.integers(1, 3)).map(
        lambda t: faults.build_fault("drop", {"direction": t[0][0], "mti": t[0][1], "nth": t[1]})
    )
    cut = st.fixed_dictionaries(
        {
            "after": st.sampled_from(["send", "journal"]),
            "nth": st.integers(1, 4),
            "off_ms": st.sampled_from([0, 1_000, 20_000]),
        }
    ).map(lambda p: faults.build_fault("power_cut", p))
    return st.tuples(drop, cut)


def _combo_duplicate_then_reorder() -> st.SearchStrategy[tuple[Fault, ...]]:
    """A message arrives twice, and the copies overtake each other."""
    leg = st.sampled_from([("to_terminal", "0210"), ("to_host", "0200"), ("to_host", "0400")])
    return st.tuples(leg, st.integers(1, 3), st.integers(0, 2_000), st.integers(1, 20_000)).map(
        lambda t: (
            faults.build_fault(
                "duplicate", {"direction": t[0][0], "mti": t[0][1], "nth": t[1], "gap_ms": t[2]}
            ),
            faults.build_fault(
                "reorder", {"direction": t[0][0], "mti": t[0][1], "nth": t[1], "hold_ms": t[3]}
            ),
        )
    )


def _combo_swap_between_sales() -> st.SearchStrategy[tuple[Fault, ...]]:
    """The device is replaced (a fresh journal, the same terminal id) between two
    sales: the new device's keys must not collide with the old one's."""
    return st.sampled_from([2_500, 5_000, 12_000, 35_000]).map(
        lambda at: (faults.build_fault("device_swap", {"at_ms": at, "off_ms": 0}),)
    )


def _combo_late_confirm_then_cancel_fails() -> st.SearchStrategy[tuple[Fault, ...]]:
    """A wallet customer confirms after the terminal's polling, and its first cancel
    is refused or lost: is the cancel retried until the order is closed?"""
    late = st.sampled_from([25_000, 40_000]).map(
        lambda ms: faults.build_fault("late_confirm", {"nth": 1, "extra_ms": ms})
    )
    cancel_fails = st.sampled_from(
        [
            {"rc_burst": {"mti": "0400", "nth": 1, "rc": "96"}},
            {"drop": {"direction": "to_host", "mti": "0400", "nth": 1}},
            {"drop": {"direction": "to_terminal", "mti": "0410", "nth": 1}},
        ]
    ).map(lambda t: faults.build_fault(*next(iter(t.items()))))
    return st.tuples(late, cancel_fails)


def _combo_transient_after_lost_answer() -> st.SearchStrategy[tuple[Fault, ...]]:
    """The first copy of a sale is charged but its answer is lost (or late); the
    resend is answered with a transient decline (91/96). The first copy's charge
    must be reversed; sometimes that reversal is itself lost and the power fails
    right after it leaves: is it still owed after the reboot?"""
    lost = st.sampled_from(
        [
            faults.build_fault("drop", {"direction": "to_terminal", "mti": "0210", "nth": 1}),
            faults.build_fault("slow_host", {"mti": "0200", "nth": 1, "extra_ms": 40_000}),
        ]
    )
    burst = st.tuples(st.integers(1, 3), st.sampled_from(["91", "96"])).map(
        lambda t: faults.build_fault(
            "rc_burst", {"mti": "0200", "nth": 2, "count": t[0], "rc": t[1]}
        )
    )
    cut = st.sampled_from(
        [
            (),
            (
                faults.build_fault("drop", {"direction": "to_host", "mti": "0400", "nth": 1}),
                faults.build_fault(
                    "power_cut", {"after": "send", "mti": "0400", "nth": 1, "off_ms": 1_000}
                ),
            ),
        ]
    )
    return st.tuples(lost, burst, cut).map(lambda t: (t[0], t[1], *t[2]))


def _combo_copies_held_past_the_inquiry() -> st.SearchStrategy[tuple[Fault, ...]]:
    """Every copy of a sale's 0200 is held in the network past the terminal's last
    send and its status inquiry: the host answers the inquiry "not found", then the
    copies land. A terminal that took "not found" for "not charged" must still
    reverse (its reversal leaves a tombstone the late copies are declined against)."""
    return st.tuples(
        st.integers(1, 2), st.integers(2, 3), st.sampled_from([40_000, 60_000, 90_000])
    ).map(
        lambda t: (
            faults.build_fault(
                "delay",
                {
                    "direction": "to_host",
                    "mti": "0200",
                    "nth": t[0],
                    "count": t[1],
                    "delay_ms": t[2],
                },
            ),
        )
    )


def _combo_batch_then_power() -> st.SearchStrategy[tuple[Fault, ...]]:
    """The power fails while a batch close is under way: right after the 0500 left
    (which sometimes never arrives) or right after the 0510 came back. After the
    reboot the batch must be resumed, or known closed, and never closed twice."""
    cut_at = st.sampled_from([("send", "0500"), ("receive", "0510")])
    cut = st.tuples(cut_at, st.sampled_from([0, 1_000, 20_000])).map(
        lambda t: faults.build_fault(
            "power_cut", {"after": t[0][0], "mti": t[0][1], "nth": 1, "off_ms": t[1]}
        )
    )
    lost = st.sampled_from(
        [(), (faults.build_fault("drop", {"direction": "to_host", "mti": "0500", "nth": 1}),)]
    )
    return st.tuples(cut, lost).map(lambda t: (t[0], *t[1]))


COMBOS: dict[str, tuple[frozenset[str], Any]] = {
    "batch-then-power": (frozenset({"drop", "power_cut"}), _combo_batch_then_power),
    "transient-after-lost-answer": (
        frozenset({"drop", "slow_host", "rc_burst", "power_cut"}),
        _combo_transient_after_lost_answer,
    ),
    "late-confirm-then-cancel-fails": (
        frozenset({"late_confirm", "rc_burst", "drop"}),
        _combo_late_confirm_then_cancel_fails,
    ),
    "swap-between-sales": (frozenset({"device_swap"}), _combo_swap_between_sales),
    "copies-held-past-the-inquiry": (frozenset({"delay"}), _combo_copies_held_past_the_inquiry),
    "device-then-power": (
        frozenset({"printer_jam", "paper_out", "print_failure", "power_cut"}),
        _combo_device_then_power,
    ),
    "loss-then-reboot": (frozenset({"drop", "power_cut"}), _combo_loss_then_reboot),
    "duplicate-then-reorder": (frozenset({"duplicate", "reorder"}), _combo_duplicate_then_reorder),
}


@functools.cache
def _combos(allowed: tuple[str, ...]) -> st.SearchStrategy[tuple[Fault, ...]] | None:
    """The targeted combinations whose kinds are all allowed."""
    usable = [
        make() for kinds, make in (COMBOS[n] for n in sorted(COMBOS)) if kinds <= set(allowed)
    ]
    return st.one_of(usable) if usable else None


@st.composite
def fault_plans(
    draw: st.DrawFn, kinds: tuple[str, ...] | None = None, wallets: bool = False
) -> tuple[Fault, ...]:
    """Swarm: draw the enabled kinds, then up to FAULTS_MAX faults of those kinds;
    one plan in four starts with a targeted combination. `wallets`: the scenario has
    wallet customers (their phones' faults may be drawn too)."""
    if kinds == ():
        return ()  # no kinds at all: no faults (None: every kind)
    features = frozenset({"wallet"}) if wallets else frozenset()
    allowed = tuple(sorted(kinds or faults.swarm_kinds(features)))
    combos = _combos(allowed)
    head: tuple[Fault, ...] = ()
    if combos is not None and draw(_COMBO_ODDS) == 0:
        # A scenario with wallet customers takes the wallet's own combination half
        # the time: among all the others it would come up once in seven.
        wallet_combo = wallets and COMBOS["late-confirm-then-cancel-fails"][0] <= set(allowed)
        if wallet_combo and draw(st.booleans()):
            head = draw(_LATE_CONFIRM_THEN_CANCEL_FAILS)
        else:
            head = draw(combos)
    enabled = sorted(draw(_enabled_kinds(allowed)))
    if not enabled:
        return head
    count = draw(_FAULT_COUNT) % (FAULTS_MAX - len(head) + 1)
    return head + tuple(draw(fault_of(pick(draw, enabled))) for _ in range(count))


_COMBO_ODDS = st.integers(0, 3)
_LATE_CONFIRM_THEN_CANCEL_FAILS = _combo_late_confirm_then_cancel_fails()
_FAULT_COUNT = st.integers(0, FAULTS_MAX)


@functools.cache
def _enabled_kinds(all_kinds: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(all_kinds), min_size=0, max_size=4, unique=True)
