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
are reached. Besides the swarm, a plan may start with one of the targeted
combinations that real incidents are made of (a device fault then a power cut, a
lost message then a reboot, a duplicate then a reorder).

The same swarm idea applies to the world's parameters: each example decides, per
group (terminal, host, network, people, cards), whether to keep the defaults or to
draw every parameter of the group, so examples range from "a default shop" to
"everything unusual at once". Amounts cover the whole valid range (log-uniform)
and every boundary that changes behaviour: the terminal's amount limit, the card's
balance, and every test-card amount of the mock host (docs/test-cards.md), each
with its neighbours. Steps include reprints, batch closes and cancels at any moment,
not only purchases.

A drawn scenario is plain data: it can always be written as a file.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from acquirer.catalogue import AMOUNT_NO_REPLY, AMOUNT_RULES, AMOUNT_SLOW, CATALOGUE_CARDS
from faults.base import Fault
from faults.devices import CHIP_REFUSALS, ChipRefusal
from faults.network import Drop, Partition
from faults.power import PowerCut
from harness.credit_strategies import at_their_sales, credit_steps
from harness.fault_strategies import COMBOS as COMBOS
from harness.fault_strategies import FAULTS_MAX as FAULTS_MAX
from harness.fault_strategies import fault_of as fault_of
from harness.fault_strategies import fault_plans as fault_plans
from harness.fault_strategies import pick as pick
from harness.hold_strategies import hold_steps
from scenarios.model import (
    INVARIANT_NAMES,
    CardSpec,
    Expect,
    HostSpec,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    Step,
    TerminalSpec,
    WalletSpec,
)

# Kept small so shrunk scenarios read well and examples stay fast.
PURCHASES_MAX = 10
CARD_PANS = ("4000000000000002", "4000000000000010", "4000000000000028")
WALLET_CODES = ("280000000000000901", "280000000000000902")
# How long a wallet customer takes to confirm on the phone: at once, within one
# status inquiry, within the reference's 30 s of polling, after it, never (None).
_CONFIRMS = st.sampled_from([0, 3_000, 12_000, 28_000, 33_000, 45_000, 119_000, None])
_ANSWER_RC = st.sampled_from(["", "", "", "96", "91"])
_STALE_SCREEN = st.integers(0, 7).map(lambda k: k == 0)  # one phone in eight

# Amounts worth trying: edges of validation, binary-float traps, test-card magic
# amounts (500 = RC 05, 5100 = RC 51, 9800 = approve-without-reply ...), big ones.
EDGE_AMOUNTS = (1, 29, 99, 100, 435, 500, 1300, 5100, 9100, 9600, 9800, 9900, 99_999_999)
# Every amount the mock host treats specially, with its neighbours on both sides.
TEST_CARD_AMOUNTS = tuple(
    sorted({a + d for a in (*AMOUNT_RULES, AMOUNT_NO_REPLY, AMOUNT_SLOW) for d in (-1, 0, 1)})
)
# The cards of the mock host's catalogue that decline, fail or answer slowly.
CATALOGUE_PANS = tuple(c.pan for c in CATALOGUE_CARDS if c.pan not in CARD_PANS)
AMOUNT_MAX = TerminalSpec().amount_max


# Strategies are built once: building one per draw (with its validation) cost
# more than the simulation of the example it drew.
_HOW = st.integers(0, 3)
_DECADE = st.integers(0, 8)
_MANTISSA = st.integers(0, 10**9 - 1)
_EDGE_INDEX = st.integers(0, 8)
_TEST_CARD = st.sampled_from(TEST_CARD_AMOUNTS)
_COMMON = st.one_of(st.sampled_from(EDGE_AMOUNTS), st.integers(1, 50_000))


def _log_uniform(draw: st.DrawFn, top: int) -> int:
    """1..top, each decade equally likely (1-9, 10-99, ..., up to `top`)."""
    e = draw(_DECADE) % len(str(top))
    low = 10**e
    high = min(10 ** (e + 1) - 1, top)
    return int(low + draw(_MANTISSA) % (high - low + 1))


def draw_amount(draw: st.DrawFn, amount_max: int = AMOUNT_MAX, balance: int = 0) -> int:
    """An amount across the whole valid range 1..amount_max (log-uniform), or on a
    boundary: the limit and its neighbours (amount_max + 1 must be refused), the
    card's balance and its neighbours, a test-card amount and its neighbours."""
    how = draw(_HOW)
    if how == 0:
        return _log_uniform(draw, amount_max)
    if how == 1:
        edges = [0, 1, 2, amount_max - 1, amount_max, amount_max + 1]
        if balance:
            edges += [balance - 1, balance, balance + 1]
        return int(pick(draw, sorted({e for e in edges if e >= 0})))
    if how == 2:
        return draw(_TEST_CARD)
    return draw(_COMMON)


@st.composite
def limit_amounts(draw: st.DrawFn, amount_max: int = AMOUNT_MAX, balance: int = 0) -> int:
    """Amounts as `draw_amount` draws them."""
    return draw_amount(draw, amount_max, balance)


@functools.cache
def amounts() -> st.SearchStrategy[int]:
    """Amounts for the default terminal: see `limit_amounts`."""
    return limit_amounts()


# Gaps from "while the previous sale is still in flight" to "a minute later".
_GAPS = st.sampled_from([0, 500, 2_000, 10_000, 30_000, 60_000])
_BATCH_AFTER = st.one_of(st.none(), st.integers(0, 60_000))
# Reprints and batch closes in the middle of things: at a sale's start plus this.
_OFFSETS = st.sampled_from([0, 100, 500, 1_500, 3_000, 5_000, 20_000, 60_000])
EXTRA_STEPS_MAX = 3
# Every step kind of the format besides purchases.
EXTRA_ACTIONS = ("reprint", "batch_close", "cancel")
_EXTRA_STEPS = st.integers(0, EXTRA_STEPS_MAX)


_LONG_ODDS = st.integers(0, 3)
_LONG_EXTRA = st.integers(10, 20)


@functools.cache
def _purchase_count(purchases: tuple[int, int]) -> st.SearchStrategy[int]:
    return st.integers(*purchases)


# eventually-settles bound for examples with unusual (slower) settings.
SETTLE_SLOW_MS = 600_000


@st.composite
def purchase_steps(
    draw: st.DrawFn,
    pans: tuple[str, ...],
    purchases: tuple[int, int] = (1, PURCHASES_MAX),
    amount_max: int = AMOUNT_MAX,
    balances: tuple[int, ...] = (),
    codes: tuple[str, ...] = (),
) -> tuple[Step, ...]:
    """Purchases, a batch close at the end (or not), and sometimes reprints and
    batch closes in the middle of a sale."""
    n = draw(_purchase_count(purchases))
    if purchases == (1, PURCHASES_MAX) and n == PURCHASES_MAX and draw(_LONG_ODDS) == 0:
        # One such example in four is a busy stretch: more sales than the terminal
        # may hold receipts pending (16), so a terminal that never clears one
        # refuses the next sale for no reason.
        n += draw(_LONG_EXTRA)
    at = 0
    steps = []
    starts = []
    previous: tuple[str, int] | None = None
    # One example in eight is a one-price stall (a coffee, a transit fare): every
    # customer pays the same amount with the same card, so any reused key comes back
    # with identical content and is answered with the stored approval.
    one_price = draw(_ONE_PRICE)
    for _ in range(n):
        at += draw(_GAPS)
        starts.append(at)
        if previous is not None and (one_price or draw(_SAME_AGAIN)):
            # The same card and amount again (a regular's coffee): what makes a
            # reused idempotency key look like a repeat of the earlier sale.
            card, amount = previous
        else:
            amount = draw_amount(draw, amount_max, pick(draw, balances) if balances else 0)
            card = pick(draw, pans + codes)
        previous = (card, amount)
        action = "scan" if card in codes else "purchase"
        steps.append(Step(at_ms=at, action=action, card=card, amount=amount))
    for _ in range(draw(_EXTRA_STEPS) if draw(st.booleans()) else 0):
        when = pick(draw, starts) + draw(_OFFSETS)
        steps.append(Step(at_ms=when, action=pick(draw, EXTRA_ACTIONS)))
    batch_after = draw(_BATCH_AFTER)
    if batch_after is not None:
        steps.append(Step(at_ms=at + batch_after, action="batch_close"))
    return tuple(sorted(steps, key=lambda s: s.at_ms))


_N_CARDS = st.integers(1, len(CARD_PANS))
# A card's chip, for a chip terminal: accepts (half the time), declines, or is pulled.
_CHIP_CARDS = st.sampled_from(("", "", "decline", "removed"))
_CHIP_NTH = st.integers(1, 3)
_CHIP_REFUSAL = st.sampled_from(CHIP_REFUSALS)
_CHIP_CUT = st.integers(0, 3).map(lambda k: k == 0)
_REVERSAL_LOST_AND_CUT: tuple[Fault, ...] = (
    Drop(direction="to_host", mti="0400", nth=1),
    PowerCut(after="send", mti="0400", nth=1, off_ms=2_000),
)
_N_WALLETS = st.integers(1, len(WALLET_CODES))


def _wallet(draw: st.DrawFn, code: str) -> WalletSpec:
    confirm = draw(_CONFIRMS)
    return WalletSpec(
        code=code,
        balance=draw(_BALANCES),
        confirm_ms=confirm or 0,
        confirms=confirm is not None,
        answer_rc=draw(_ANSWER_RC),
        stale_screen=draw(_STALE_SCREEN),
    )


_SAME_AGAIN = st.integers(0, 3).map(lambda k: k == 0)  # one purchase in four
_ONE_PRICE = st.integers(0, 7).map(lambda k: k == 0)  # one example in eight
_BALANCES = st.sampled_from([100_000_000, 50_000, 3_000])
_RETRIES = st.integers(0, 2)
_LATENCIES = st.sampled_from([5, 40, 400])
_SEEDS = st.integers(0, 2**32 - 1)


def _either(default: Any, *others: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from((default, *others))


# Every parameter that changes behaviour, each from its default and a few values
# around what matters (timeouts against latencies and processing times, limits at
# 0, 1 and beyond). Values stay inside what a correct firmware can meet: the
# reference firmware must hold every invariant under any of them.
_TERMINAL = st.builds(
    TerminalSpec,
    response_timeout_ms=_either(15_000, 3_000, 30_000),
    # Not 1: with a single send, the reference declines on RC 91/96 without a
    # reversal (by design, tests/terminal), so a duplicated or replayed copy of
    # that 0200 can still charge the declined sale (found by this strategy; left
    # to the firmware's owners to decide).
    max_sends=_either(2, 3),
    debounce_ms=_either(3_000, 0, 500, 10_000),
    amount_max=_either(AMOUNT_MAX, 1_000_000, 10_000),
    reversal_max_tries=_either(60, 10),
)
# idempotency_retention_ms is not drawn: shorter than the terminal's repeats and
# reversals take, a repeat after expiry charges again whatever the firmware does.
_HOST = st.builds(
    HostSpec,
    processing_ms=_either(20, 0, 2_000, 16_000),
    test_amounts=st.booleans(),
)
_NETWORK = st.builds(
    NetworkSpec, latency_ms=_either(40, 5, 400, 2_000), jitter_ms=_either(0, 30, 1_000)
)


@st.composite
def _people(draw: st.DrawFn) -> PeopleSpec:
    # The customer taps after the cashier confirms (a tap before the confirm is
    # ignored by design, and the sale then waits for ever: not a firmware flaw).
    confirm = draw(_either(300, 0, 2_000))
    return PeopleSpec(
        confirm_after_ms=confirm,
        tap_after_ms=confirm + draw(_either(700, 100, 5_000)),
        retap_after_ms=draw(_either(1_000, 0, 5_000)),
        retry_on_failed=draw(_RETRIES),
        retry_after_ms=draw(_either(5_000, 0, 500, 20_000)),
        reprint_on_pending=draw(st.booleans()),
        reprint_after_ms=draw(_either(3_000, 0, 500, 20_000)),
        reprints_max=draw(_either(3, 0, 1, 10)),
        # restart_after_power stays on: without it a sale cut by a power cut is
        # never finished by anyone, and eventually-settles fires whatever the
        # firmware does.
        print_ms=draw(_either(1_500, 0, 100, 10_000)),
    )


_CATALOGUE_PICKS = st.lists(st.sampled_from(CATALOGUE_PANS), max_size=2, unique=True)
_CARD_RC = _either("", "05", "51", "91")
_CARD_SLOW = _either(0, 20_000)


@st.composite
def scenarios(
    draw: st.DrawFn,
    firmware: str = "reference",
    kinds: tuple[str, ...] | None = None,
    name: str = "fuzz",
    purchases: tuple[int, int] = (1, PURCHASES_MAX),
    wallets: bool = False,
    partial: bool = False,
    chip: bool = False,
    refund: bool = False,
    offline: bool = False,
    terminals: bool = True,
    preauth: bool = False,
) -> Scenario:
    """A whole scenario: cards, purchases, people, terminal, host, network and a
    swarm fault plan. Each parameter group keeps its defaults or is drawn whole.
    With `wallets` (for firmwares that declare the wallet feature), half the
    examples also have wallet customers, each with a phone that confirms after a
    drawn delay (or never) and sometimes a wallet that answers "unknown". With
    `partial` (the firmware declares the `partial` feature), half the examples have
    a terminal that takes partial approvals and cards whose issuer gives them. With
    `chip` (the firmware declares the `chip` feature), half the examples have a chip
    terminal, and cards whose chip declines the approval or is pulled too early. With
    `refund` (the firmware declares the `refund` feature), half the examples have the
    cashier void or refund some of the sales. With `offline` (the firmware declares the
    `offline` feature), half the examples have a terminal with a floor limit, and a
    network partition that sends it offline. With `terminals`, one example in four
    is a world of 2-4 terminals on one host (see `several_terminals`; a void or
    refund goes to the terminal of the sale it names). With `preauth` (the firmware
    declares the `preauth` feature), half the examples have holds, completions and
    tips (harness/hold_strategies.py)."""
    n_cards = draw(_N_CARDS)
    pans = CARD_PANS[:n_cards]
    unusual_cards = draw(st.booleans()) and draw(st.booleans())  # one example in four
    cards = tuple(
        CardSpec(
            pan=p,
            balance=draw(_BALANCES),
            rc=draw(_CARD_RC) if unusual_cards else "",
            slow_ms=draw(_CARD_SLOW) if unusual_cards else 0,
        )
        for p in pans
    )
    if unusual_cards:
        pans += tuple(draw(_CATALOGUE_PICKS))
    terminal = draw(_TERMINAL) if draw(st.booleans()) else TerminalSpec()
    host = draw(_HOST) if draw(st.booleans()) else HostSpec()
    network = draw(_NETWORK) if draw(st.booleans()) else NetworkSpec(latency_ms=draw(_LATENCIES))
    people = draw(_people()) if draw(st.booleans()) else PeopleSpec(retry_on_failed=draw(_RETRIES))
    wallet_specs: tuple[WalletSpec, ...] = ()
    if wallets and draw(st.booleans()):
        wallet_specs = tuple(_wallet(draw, code) for code in WALLET_CODES[: draw(_N_WALLETS)])
    steps = draw(
        purchase_steps(
            pans,
            purchases,
            terminal.amount_max,
            tuple(c.balance for c in cards),
            tuple(w.code for w in wallet_specs),
        )
    )
    # Slow settings (long timeouts, slow issuers, late retries) legitimately take
    # longer than the default bound to settle: give those examples room.
    default_world = (terminal, host, people) == (
        TerminalSpec(),
        HostSpec(),
        PeopleSpec(retry_on_failed=people.retry_on_failed),
    )
    # A wallet customer may take up to two minutes per attempt on the phone.
    slow = not default_world or unusual_cards or bool(wallet_specs)
    sc = Scenario(
        name=name,
        seed=draw(_SEEDS),
        firmware=firmware,
        terminal=terminal,
        host=host,
        network=network,
        people=people,
        cards=cards,
        wallets=wallet_specs,
        steps=steps,
        faults=draw(fault_plans(kinds, bool(wallet_specs))),
        expect=Expect(
            invariants=INVARIANT_NAMES, settle_within_ms=SETTLE_SLOW_MS if slow else 120_000
        ),
        close_batch=draw(st.integers(0, 7)) != 0,
    )
    if terminal != TerminalSpec() and not draw(_INQUIRY_ON):
        # Drawn last: it leaves every earlier draw (and so every card-only example
        # the strategies drew before the status inquiry existed) as it was.
        sc = replace(sc, terminal=replace(terminal, status_inquiry=False))
    sc = _features(draw, sc, kinds, partial, chip, refund, offline, preauth)
    if terminals and draw(_SEVERAL):
        sc = several_terminals(draw, sc)
    return sc


def _features(
    draw: st.DrawFn,
    sc: Scenario,
    kinds: tuple[str, ...] | None,
    partial: bool,
    chip: bool,
    refund: bool,
    offline: bool,
    preauth: bool,
) -> Scenario:
    """What a firmware's features add to a drawn scenario, each drawn last (so every
    example of a firmware without the feature stays as it was): partial approvals,
    chip cards, voids and refunds, offline approval, pre-authorisations."""
    if partial and draw(st.booleans()):
        # Drawn last, and only for firmwares that take partial approvals: a terminal
        # configured to, and cards whose issuer approves what the balance covers.
        sc = replace(
            sc,
            terminal=replace(sc.terminal, partial_approval=True),
            cards=tuple(replace(c, partial=draw(st.booleans())) for c in sc.cards),
        )
    if chip and draw(st.booleans()):
        # Drawn last, and only for firmwares that complete chip cards: a chip terminal,
        # each card accepts the approval, declines it or is pulled too early, and one
        # example in two has a chip_refusal fault (the nth completion refused). One
        # in four loses the first reversal (0400) and cuts the power as it leaves: a
        # declined chip sale's reversal must still be owed after the reboot.
        refusal: tuple[Fault, ...] = ()
        if draw(st.booleans()):
            refusal = (ChipRefusal(nth=draw(_CHIP_NTH), reason=draw(_CHIP_REFUSAL)),)
        if draw(_CHIP_CUT):
            refusal += _REVERSAL_LOST_AND_CUT
        sc = replace(
            sc,
            terminal=replace(sc.terminal, chip=True),
            cards=tuple(replace(c, chip=draw(_CHIP_CARDS)) for c in sc.cards),
            faults=sc.faults + refusal,
        )
    if refund and draw(st.booleans()):
        # Drawn last, and only for firmwares that void and refund: the cashier voids
        # or refunds some of the sales (harness/credit_strategies.py).
        steps, lost = draw(credit_steps(sc.steps))
        sc = replace(sc, steps=steps, faults=sc.faults + lost)
    if offline and not sc.terminal.partial_approval and draw(st.booleans()):
        sc = _offline_terminal(draw, sc, kinds is None or "partition" in kinds)
    if preauth and not sc.terminal.partial_approval and draw(st.booleans()):
        # Drawn last but one, and only for firmwares that declare `preauth`: holds,
        # completions and tips (a hold is never partial: not on such a terminal).
        steps, aimed = draw(hold_steps(sc.steps))
        sc = replace(sc, steps=steps, faults=sc.faults + aimed)
    return sc


# One example in four (shrinking towards 0 goes towards one terminal, no clone).
_SEVERAL = st.integers(0, 3).map(lambda k: k == 3)
_LANES_N = st.integers(2, 4)
_LANE_PICK = st.integers(0, 3)
_CLONE = st.integers(0, 3).map(lambda k: k == 3)  # one world of several in four


def several_terminals(draw: st.DrawFn, sc: Scenario) -> Scenario:
    """`sc` as a world of 2-4 terminals on its host (drawn last, so every example
    of one terminal stays as it was): each step and fault goes to a drawn terminal;
    one world in four has a clone (the last terminal shares the first one's id, on
    a fresh journal; such a world closes no batch); customers told FAILED may walk
    to the next terminal; the second merchant has every other terminal."""
    k = draw(_LANES_N)
    clone = draw(_CLONE)
    ids = [sc.terminal.id, *(x for x in (f"T{j:04d}" for j in range(2, 9)) if x != sc.terminal.id)]
    terminals = tuple(
        replace(
            sc.terminal,
            id=ids[0] if clone and i == k - 1 else ids[i],
            name=f"L{i + 1}",
            merchant_id=sc.terminal.merchant_id if i % 2 == 0 else "M000000000002",
        )
        for i in range(k)
    )
    if clone:
        terminals = (*terminals[:-1], replace(terminals[-1], merchant_id=terminals[0].merchant_id))
    names = [t.lane for t in terminals]
    steps = tuple(replace(s, terminal=names[draw(_LANE_PICK) % k]) for s in sc.steps)
    steps = at_their_sales(steps, names[0])  # a sale is refunded where it was made
    faults = tuple(replace(f, terminal=names[draw(_LANE_PICK) % k]) for f in sc.faults)
    people = replace(sc.people, next_terminal_on_failed=draw(st.booleans()))
    sc = replace(sc, terminals=terminals, steps=steps, faults=faults, people=people)
    if clone:
        # Two devices under one id share the host's settlement of it: one's batch close
        # settles the other's sales too, so a reversal the other sends later is refused
        # (the sale is settled) whatever its firmware does. A world with a clone closes
        # no batch: it shows what a clone does to sales, not to settlement. Nor does it
        # swap a device (a device swap starts with the cashier closing the day).
        kept = tuple(s for s in sc.steps if s.action != "batch_close")
        no_swap = tuple(f for f in sc.faults if f.KIND != "device_swap")
        sc = replace(sc, steps=kept or sc.steps[:1], faults=no_swap, close_batch=False)
    return sc


# Offline terminals: the floor against the drawn amounts (a few hundred to a few
# thousand minor units), the queue at its edges, deadlines long enough for the
# partitions drawn below to heal before them (and one that does not, sometimes).
_OFFLINE_FLOOR = st.sampled_from((2_000, 10_000, 1_000_000))
_OFFLINE_MAX = st.sampled_from((1, 3, 10))
_OFFLINE_DEADLINE_SHORT = 600_000
_OFFLINE_DEADLINE = st.sampled_from((_OFFLINE_DEADLINE_SHORT, 1_800_000))
_PARTITION_FROM = st.integers(0, 60_000)
_PARTITION_MS = st.sampled_from((30_000, 90_000, 300_000, 900_000))
_NEAR_CUTOFF = st.integers(0, 3).map(lambda k: k == 3)  # one partition in four
_CUT_OFFLINE = st.integers(0, 3).map(lambda k: k == 0)  # one other partition in four
_OFFLINE_OFF_MS = st.sampled_from((1_000, 60_000, 300_000))
_HEAL_BEFORE_DEADLINE = st.integers(30_000, 90_000)
_CUTOFF_SLOW = st.sampled_from((20_000, 40_000, 60_000))


def _offline_terminal(draw: st.DrawFn, sc: Scenario, partition: bool) -> Scenario:
    """Drawn last, for firmwares that approve offline: a floor limit, a queue limit
    and an upload deadline, and (three examples in four) a partition that makes the
    host unreachable for a while, so sales go offline and are uploaded after it: one
    partition in four heals just before the first sale's upload cutoff, one other in
    four has the power cut while it lasts."""
    terminal = replace(
        sc.terminal,
        # A partition of up to 15 minutes outlasts 10 reversal tries (about 4 minutes):
        # the default 60 (about 30 minutes) is what a terminal must hold out for here.
        reversal_max_tries=max(sc.terminal.reversal_max_tries, TerminalSpec().reversal_max_tries),
        offline_floor=draw(_OFFLINE_FLOOR),
        offline_max=draw(_OFFLINE_MAX),
        offline_deadline_ms=draw(_OFFLINE_DEADLINE),
    )
    faults = sc.faults
    if partition and draw(st.integers(0, 3)) != 0:
        if draw(_NEAR_CUTOFF):
            return _upload_at_the_cutoff(draw, replace(sc, terminal=terminal))
        start = draw(_PARTITION_FROM)
        length = draw(_PARTITION_MS)
        faults += (Partition(from_ms=start, to_ms=start + length),)
        if draw(_CUT_OFFLINE):
            # The power fails while sales wait offline: the queue, and each sale's
            # approval time (its deadline), must come back from the journal.
            at = start + draw(st.integers(0, length))
            faults += (PowerCut(at_ms=at, off_ms=draw(_OFFLINE_OFF_MS)),)
    return replace(sc, terminal=terminal, faults=faults)


def _upload_at_the_cutoff(draw: st.DrawFn, sc: Scenario) -> Scenario:
    """A targeted combination at the edge of the upload deadline: the first sale goes
    offline, the partition heals a little before its cutoff and the issuer is slow,
    so the advice reaches the host while the terminal gives up on it. A terminal that
    shows the sale expired must then reverse what the advice charged."""
    first = min((s.at_ms for s in sc.steps if s.action == "purchase"), default=0)
    # The shorter deadline: a partition of nearly 30 minutes would outlast the
    # reversal tries (about 30 minutes) of any sale it also cuts off.
    deadline = _OFFLINE_DEADLINE_SHORT
    heal = first + deadline - draw(_HEAL_BEFORE_DEADLINE)
    slow = draw(_CUTOFF_SLOW)
    return replace(
        sc,
        terminal=replace(sc.terminal, offline_deadline_ms=deadline),
        cards=tuple(replace(c, slow_ms=max(c.slow_ms, slow)) for c in sc.cards),
        faults=(*sc.faults, Partition(from_ms=first, to_ms=heal)),
        expect=replace(sc.expect, settle_within_ms=SETTLE_SLOW_MS),
    )


_INQUIRY_ON = st.integers(0, 3).map(lambda k: k != 0)  # one drawn terminal in four: off
