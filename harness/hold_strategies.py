"""Fuzz strategies for pre-authorisations, completions and tips (issue 15), kept out of
harness/strategies.py, which draws them last for firmwares that declare `preauth`.

Some card purchases become pre-authorisations (a hold for the same card and amount);
most holds are completed some time later, for the whole hold or two to four quarters
of it; one or two sales (a purchase, or a pre-authorisation's completion) get a tip of
5-25 % of their amount; with two tips, one example in two has the second correct the
first (on the same sale, with no batch close before them). One example in two closes
the batch between the payments and the completions and tips, so holds stand through a
close and some tips come too late.
Faults aimed at the new messages: one example in two loses one answer of a completion
or tip (a `drop` of the nth 0230), one in four every answer of one (the terminal must
keep sending it under the same key), and one in four cuts the power right after the
nth 0220 left the terminal, its message lost.
"""

from __future__ import annotations

from hypothesis import strategies as st

from faults.base import Fault
from faults.network import Drop
from faults.power import PowerCut
from scenarios.model import Step

_AFTER = st.sampled_from([20_000, 45_000, 90_000, 240_000])
_HOLD = st.integers(0, 2).map(lambda k: k == 0)  # one card purchase in three is a hold
_COMPLETE = st.integers(0, 3).map(lambda k: k != 0)  # three holds in four are completed
_QUARTERS = st.integers(1, 4).map(lambda k: 0 if k == 1 else k)  # 0: the whole hold
_TIPS = st.integers(0, 2)
_TIP_PERCENT = st.sampled_from([5, 10, 15, 20, 25])
_CORRECTED = st.booleans()  # two tips: one example in two corrects the first
_LOSE_ONE = st.booleans()
_LOSE_ALL = st.integers(0, 3).map(lambda k: k == 0)
_CUT = st.integers(0, 3).map(lambda k: k == 0)
# Answers lost in a row: more than any firmware's patience for one answer.
ALL_ANSWERS = 3


@st.composite
def hold_steps(
    draw: st.DrawFn, steps: tuple[Step, ...]
) -> tuple[tuple[Step, ...], tuple[Fault, ...]]:
    """`steps` with some card purchases turned into holds, completions and tips of
    the payments added, in time order, and the faults aimed at them."""
    out = [
        Step(at_ms=s.at_ms, action="preauth", card=s.card, amount=s.amount, terminal=s.terminal)
        if s.action == "purchase" and draw(_HOLD)
        else s
        for s in steps
    ]
    payments = [s for s in out if s.action in ("purchase", "scan", "preauth")]
    cards = [(n, s) for n, s in enumerate(payments, 1) if s.action != "scan"]
    if not cards:
        return tuple(out), ()
    last_ms = payments[-1].at_ms
    at_ms = last_ms
    if draw(st.booleans()):
        at_ms += draw(_AFTER) // 2
        out.append(Step(at_ms=at_ms, action="batch_close"))
    adjusts = 0
    for n, s in cards:
        if s.action == "preauth" and draw(_COMPLETE):
            quarters = draw(_QUARTERS)
            amount = max(1, s.amount * quarters // 4) if quarters and s.amount > 0 else 0
            at_ms += draw(_AFTER)
            out.append(Step(at_ms=at_ms, action="complete", amount=amount, sale=n))
            adjusts += 1
    tips = draw(_TIPS)
    corrected = tips == 2 and draw(_CORRECTED)
    if corrected:
        # A corrected tip: the second goes on the first one's sale, with no batch
        # close before them (a close would have both refused).
        out = [s for s in out if s.action != "batch_close"]
    first: tuple[int, Step] | None = None
    for _ in range(tips):
        if corrected and first is not None:
            n, s = first
        else:
            n, s = cards[draw(st.integers(0, len(cards) - 1))]
        first = first or (n, s)
        tip = max(1, s.amount * draw(_TIP_PERCENT) // 100) if s.amount > 0 else 1
        at_ms += draw(_AFTER)
        out.append(Step(at_ms=at_ms, action="tip", amount=tip, sale=n))
        adjusts += 1
    faults: list[Fault] = []
    if adjusts and draw(_LOSE_ONE):
        count = ALL_ANSWERS if draw(_LOSE_ALL) else 1
        nth = draw(st.integers(1, adjusts))
        faults.append(Drop(direction="to_terminal", mti="0230", nth=nth, count=count))
    if adjusts and draw(_CUT):
        nth = draw(st.integers(1, adjusts))
        faults.append(Drop(direction="to_host", mti="0220", nth=nth))
        faults.append(PowerCut(after="send", mti="0220", nth=nth))
    return tuple(sorted(out, key=lambda s: s.at_ms)), tuple(faults)
