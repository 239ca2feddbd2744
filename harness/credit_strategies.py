"""Fuzz strategies for the cashier's voids and refunds (issue 15), kept out of
harness/strategies.py, which draws them last for firmwares that declare `refund`.

One to three credit steps, each naming an earlier payment step: a void, or a refund
of the whole sale or a quarter to three quarters of it, some time after the sale;
one example in two closes the batch between the sales and the credits, so some voids
fall outside the batch window; one refund in three has its answer lost (a `drop` of
the 0210 that, counting the sales' answers first, should be the refund's), so a retry
is what the terminal does next; and, drawn last, one example with refunds in four
loses every answer of one refund (the terminal must give it up and reverse it), and
one in four cuts the power right after one refund's 0200 left the terminal (its
request sometimes lost too): the refund must be resumed after the reboot; and one in
four asks for a batch close soon after a credit step, while it may still be in
flight (a close must wait for it, or count it).
Three credit steps in four name a card purchase (a sale a refund can be of); the
fourth any payment (a scan, a declined sale: the refusal paths).

In a world of several terminals (`at_their_sales`) each credit step goes to the terminal
of the sale it names, renumbered among that terminal's payments: the cashier refunds a
sale at the counter that made it (the host refunds a sale only there).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from faults.base import Fault
from faults.network import Drop
from faults.power import PowerCut
from scenarios.credits import CREDIT_ACTIONS
from scenarios.model import PAYMENT_ACTIONS, Step

_CREDITS = st.integers(1, 3)
_AFTER = st.sampled_from([20_000, 45_000, 90_000, 240_000])
_ACTIONS = st.sampled_from(["void", "refund"])
_QUARTERS = st.integers(0, 3)  # 0: the whole sale; else that many quarters of it
_LOSE_ANSWER = st.integers(0, 2).map(lambda k: k == 0)
_LOSE_ALL = st.integers(0, 3).map(lambda k: k == 0)
_CUT = st.integers(0, 3).map(lambda k: k == 0)
_ANY_SALE = st.integers(0, 3).map(lambda k: k == 0)
_CLOSE_SOON = st.integers(0, 3).map(lambda k: k == 0)
_SOON = st.sampled_from([50, 500, 3_000, 16_000])
# Answers lost in a row: at least every send of a refund (max_sends is 2 or 3).
ALL_ANSWERS = 3


@st.composite
def credit_steps(
    draw: st.DrawFn, steps: tuple[Step, ...]
) -> tuple[tuple[Step, ...], tuple[Fault, ...]]:
    """`steps` plus voids and refunds of their payment steps, in time order, and the
    faults that lose some refunds' answers."""
    payments = [s for s in steps if s.action in PAYMENT_ACTIONS]
    if not payments:
        return steps, ()
    out = list(steps)
    faults: list[Fault] = []
    refunds = 0
    last_ms = payments[-1].at_ms
    if draw(st.booleans()):
        out.append(Step(at_ms=last_ms + draw(_AFTER) // 2, action="batch_close"))
    cards = [n for n, s in enumerate(payments, 1) if s.action == "purchase"]
    for _ in range(draw(_CREDITS)):
        if cards and not draw(_ANY_SALE):
            n = cards[draw(st.integers(0, len(cards) - 1))]
        else:
            n = draw(st.integers(1, len(payments)))
        sale = payments[n - 1]
        action = draw(_ACTIONS)
        quarters = draw(_QUARTERS) if action == "refund" else 0
        amount = max(1, sale.amount * quarters // 4) if quarters and sale.amount > 0 else 0
        at_ms = max(sale.at_ms, last_ms) + draw(_AFTER)
        out.append(Step(at_ms=at_ms, action=action, amount=amount, sale=n))
        if action == "refund":
            refunds += 1
            if draw(_LOSE_ANSWER):
                nth = len(payments) + refunds
                faults.append(Drop(direction="to_terminal", mti="0210", nth=nth))
    if refunds and draw(_LOSE_ALL):
        nth = len(payments) + draw(st.integers(1, refunds))
        faults.append(Drop(direction="to_terminal", mti="0210", nth=nth, count=ALL_ANSWERS))
    credits = [s for s in out if s.action in CREDIT_ACTIONS]
    if len(credits) > 0 and draw(_CLOSE_SOON):
        after = credits[draw(st.integers(0, len(credits) - 1))]
        out.append(Step(at_ms=after.at_ms + draw(_SOON), action="batch_close"))
    if refunds and draw(_CUT):
        nth = len(payments) + draw(st.integers(1, refunds))
        if draw(st.booleans()):
            faults.append(Drop(direction="to_host", mti="0200", nth=nth))
        faults.append(PowerCut(after="send", mti="0200", nth=nth))
    return tuple(sorted(out, key=lambda s: s.at_ms)), tuple(faults)


def at_their_sales(steps: tuple[Step, ...], first: str) -> tuple[Step, ...]:
    """`steps` (in time order, each at a terminal; `first`: the terminal of a step
    that names none) with every void and refund moved to the terminal of the payment
    it names, by that payment's place among its terminal's own payments."""
    placed: list[tuple[str, int]] = []  # each payment of the run: (terminal, its n-th)
    count: dict[str, int] = {}
    out = []
    for s in steps:
        lane = s.terminal or first
        if s.action in PAYMENT_ACTIONS:
            count[lane] = count.get(lane, 0) + 1
            placed.append((lane, count[lane]))
        elif s.action in CREDIT_ACTIONS and 0 < s.sale <= len(placed):
            lane, n = placed[s.sale - 1]
            s = replace(s, terminal=lane, sale=n)
        out.append(s)
    return tuple(out)
