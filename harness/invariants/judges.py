"""The judging functions: each invariant as a function of the observations and the
host's books (see `harness.invariants` for how they are fed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from acquirer.host import Acquirer, HostTxn
from acquirer.host_model import KIND_PREAUTH

from .model import (
    LIVENESS,
    IntentBooks,
    IntentObs,
    Violation,
    base_amount,
    intended,
    live_charge,
    money,
)

if TYPE_CHECKING:
    from . import Observations


def judge_intent(obs: Observations, o: IntentObs, b: IntentBooks) -> list[Violation]:
    """The per-intent invariants for one intent, given what the host holds for it."""
    out: list[Violation] = []
    n = o.intent
    want = intended(o)
    if b.net > want:
        out.append(
            Violation(
                "no-duplicate-charge",
                f"intent {n} ({money(want)} with card ...{o.card[-4:]}) was charged "
                f"{money(b.net)} net in {len(b.live)} {'debit' if len(b.live) == 1 else 'debits'} "
                f"(rrn {', '.join(t.rrn for t in b.live)}).",
                n,
                tuple(t.rrn for t in b.live),
                (o.seq, *_seqs_for(obs, b.live)),
            )
        )
    out += _judge_failures(obs, o, b)
    out += _judge_approvals(obs, o, b)
    out += _judge_receipts_owed(obs, o, b)
    out += _judge_settles(obs, o)
    return out


def _judge_failures(obs: Observations, o: IntentObs, b: IntentBooks) -> list[Violation]:
    """no-charge-on-failure: an intent shown FAILED or DECLINED (or an offline sale
    shown unpaid) holds no net debit."""
    out: list[Violation] = []
    n = o.intent
    failed = [f for f in o.accepted() if f.outcome in ("declined", "failed")]
    if failed and b.net > 0:
        # Every answer the customer left with is judged, not only the last: a later
        # display (a late APPROVED, a boot message) does not undo what they were told.
        f = failed[0]
        out.append(
            Violation(
                "no-charge-on-failure",
                f"intent {n} was shown {f.outcome.upper()} but the host kept "
                f"{money(b.net)} (rrn {', '.join(t.rrn for t in b.live)}).",
                n,
                tuple(t.rrn for t in b.live),
                (f.seq, *_seqs_for(obs, b.live)),
            )
        )
    told = obs.offline.told_unpaid.get(n)
    if told is None or failed:
        return out
    # The books count a sale the cashier asked to void as the charge it was (credits.py
    # judges the void): what the host still holds is its live charges.
    held = [t for t in b.live if live_charge(t)]
    kept = sum(t.amount - t.tip for t in held)
    if kept > 0:
        # An offline sale shown expired (collect the payment another way) or declined
        # late: the customer pays again, so the host must hold nothing for it.
        out.append(
            Violation(
                "no-charge-on-failure",
                f"intent {n}'s offline sale was shown {told[0].replace('-', ' ').upper()} "
                f"(not paid) but the host kept {money(kept)} "
                f"(rrn {', '.join(t.rrn for t in held)}).",
                n,
                tuple(t.rrn for t in held),
                (told[1], *_seqs_for(obs, held)),
            )
        )
    return out


def _judge_receipts_owed(obs: Observations, o: IntentObs, b: IntentBooks) -> list[Violation]:
    """receipt-for-every-charge: each live charge of an approved intent has a receipt
    printed, or shown pending."""
    out: list[Violation] = []
    n = o.intent
    if o.shown_approved():
        for txn in b.live:
            if txn.rrn in obs.printed or txn.rrn in obs.pending_seq:
                continue  # printed, or visibly pending: a reprint completes it
            if obs.offline.receipt_owned(txn.idem_key, n):
                continue  # printed (or shown pending) offline, before the host knew it
            out.append(
                Violation(
                    "receipt-for-every-charge",
                    f"intent {n} was approved and charged {money(txn.amount)} (rrn {txn.rrn}) "
                    "but no receipt was printed and none is shown as pending.",
                    n,
                    (txn.rrn,),
                    (o.final_seq, *_seqs_for(obs, [txn])),
                )
            )
    return out


def _judge_settles(obs: Observations, o: IntentObs) -> list[Violation]:
    """eventually-settles for one intent: a truthful final state, in time."""
    out: list[Violation] = []
    n = o.intent
    first = o.finals[0] if o.finals else None
    if o.refused_seq and first is not None:
        out.append(
            Violation(
                "eventually-settles",
                f"intent {n} ({money(intended(o))}, a valid amount) was shown "
                f"{first.outcome.upper()} without the terminal asking the host, in a run "
                "with no fault, batch close under way or reversal before it: the final "
                "state is not the truthful one.",
                n,
                seqs=(o.seq, o.refused_seq),
                klass=LIVENESS,
            )
        )
    if (
        o.approval_seq
        and not o.faulted
        and not o.chip_refused
        and first is not None
        and first.outcome != "approved"
    ):
        out.append(
            Violation(
                "eventually-settles",
                f"intent {n}: the host's approval reached the terminal (line "
                f"{o.approval_seq}) with no fault during the sale, yet it showed "
                f"{first.outcome.upper()}: the final state is not the truthful one.",
                n,
                seqs=(o.approval_seq, first.seq),
                klass=LIVENESS,
            )
        )
    if not o.final:
        out.append(
            Violation(
                "eventually-settles",
                f"intent {n} never reached a final state (approved, declined or failed).",
                n,
                seqs=(o.seq, *((o.last_display_seq,) if o.last_display_seq else ())),
                klass=LIVENESS,
            )
        )
    else:
        if o.waited_ms > obs.settle_within_ms and first is not None:
            # Whatever the network and host do, a terminal times out: a customer is
            # not kept waiting through an outage.
            out.append(
                Violation(
                    "eventually-settles",
                    f"intent {n}: the customer waited {o.waited_ms} ms for a final "
                    f"state (more than {obs.settle_within_ms} ms) while the terminal "
                    "had power: it must time out whatever the network and host do.",
                    n,
                    seqs=(o.seq, first.seq),
                    klass=LIVENESS,
                )
            )
        heal_ms = max(obs.last_fault_ms, o.start_ms)
        if o.final_ms > heal_ms + obs.settle_within_ms:
            out.append(
                Violation(
                    "eventually-settles",
                    f"intent {n} took until {o.final_ms} ms to reach a final state, more than "
                    f"{obs.settle_within_ms} ms after the last fault ({heal_ms} ms).",
                    n,
                    seqs=(o.seq, o.final_seq),
                    klass=LIVENESS,
                )
            )
    return out


def _judge_approvals(obs: Observations, o: IntentObs, b: IntentBooks) -> list[Violation]:
    """`approved-means-charged`: every APPROVED display of an intent is backed by a
    live (approved, not reversed) host purchase of that intent, the one it names;
    the amount it was approved for is the amount entered, or the smaller amount the
    display states (a partial approval: the cashier collects the rest)
    (`amount-integrity`)."""
    out: list[Violation] = []
    n = o.intent
    want = intended(o)
    live = {t.rrn: t for t in b.live}
    for f in o.finals:
        if f.outcome != "approved":
            continue
        if f.offline:
            # An offline approval is judged by offline-uploaded; once its advice is
            # booked, it must be booked as what the customer asked for (a hold shown
            # approved offline and booked as a sale took the money it was to hold).
            booked = next((t for t in b.live if _wrong_kind(o, t)), None)
            if booked is not None:
                out.append(_wrong_kind_violation(obs, o, f.seq, booked))
            continue
        txn = live.get(f.rrn) if f.rrn else (b.live[0] if b.live else None)
        if txn is None:
            out.append(
                Violation(
                    "approved-means-charged",
                    f"intent {n} was shown APPROVED"
                    + (f" (rrn {f.rrn})" if f.rrn else "")
                    + f" but {_no_charge_because(obs, n, f.rrn, b)}.",
                    n,
                    (f.rrn,) if f.rrn else (),
                    (f.seq, *_seqs_for(obs, b.live)),
                )
            )
        elif _wrong_kind(o, txn):
            out.append(_wrong_kind_violation(obs, o, f.seq, txn))
        elif f.amount and (base_amount(txn) != f.amount or f.amount > want):
            out.append(
                Violation(
                    "amount-integrity",
                    f"intent {n} was shown APPROVED for {money(f.amount)} of the "
                    f"{money(want)} entered but the host charged {money(base_amount(txn))} "
                    f"(rrn {txn.rrn}).",
                    n,
                    (txn.rrn,),
                    (f.seq, *_seqs_for(obs, [txn])),
                )
            )
        elif not f.amount and base_amount(txn) != want:
            out.append(
                Violation(
                    "amount-integrity",
                    f"intent {n} was shown APPROVED for the {money(want)} entered but "
                    f"the host charged {money(base_amount(txn))} (rrn {txn.rrn})"
                    + (
                        ": a partial approval shown as a full one, so the cashier "
                        "does not collect the rest."
                        if base_amount(txn) < want
                        else "."
                    ),
                    n,
                    (txn.rrn,),
                    (f.seq, *_seqs_for(obs, [txn])),
                )
            )
        if len(out) >= 2:
            break  # one flip-flopping intent says enough in two sentences
    return out


def _wrong_kind(o: IntentObs, txn: HostTxn) -> bool:
    """Is `txn` of the other kind than the customer asked: a charge for a
    pre-authorisation, or a hold for a sale?"""
    return o.preauth != (txn.kind == KIND_PREAUTH)


def _wrong_kind_violation(obs: Observations, o: IntentObs, seq: int, txn: HostTxn) -> Violation:
    """`amount-integrity`: a hold asked for but the card charged (money taken that was
    only to be held), or a sale asked for but only a hold placed (never captured)."""
    if o.preauth:
        what = f"a pre-authorisation (a hold) but the host charged it as a {txn.kind}"
    else:
        what = f"a sale but the host booked it as a {txn.kind}, not a charge"
    return Violation(
        "amount-integrity",
        f"intent {o.intent} was shown APPROVED for {what} (rrn {txn.rrn}).",
        o.intent,
        (txn.rrn,),
        (seq, *_seqs_for(obs, [txn])),
    )


def _no_charge_because(obs: Observations, n: int, rrn: str, b: IntentBooks) -> str:
    """Why an APPROVED display has no live charge of its intent behind it."""
    if not rrn:
        return "the host holds no live charge for it"
    txn = obs.host.transaction_by_rrn(rrn) if obs.host is not None else None
    if txn is None:
        return "the host has no transaction with that rrn"
    if txn.terminal_id != obs.terminal_id:
        return f"rrn {rrn} belongs to terminal {txn.terminal_id}"
    if obs.own_books_only and rrn not in obs.own_rrns:
        return f"rrn {rrn} is a charge another device made under this terminal's id"
    owner = obs.intent_of(txn)
    if owner != n:
        whose = f"intent {owner}'s" if owner else "another sale's"
        return f"rrn {rrn} is {whose} charge; this intent was not charged under it"
    return f"the host's transaction is {txn.status}"


def judge_receipt(
    obs: Observations, seq: int, receipt: dict[str, Any], txn: HostTxn | None, n: int = 0
) -> list[Violation]:
    """An APPROVED receipt must match a live host transaction of this terminal: its
    amount, RRN and masked card, and the intent it was printed for (`n`, from the
    receipt's key; 0 = unknown), which must not be one shown only DECLINED/FAILED."""
    rrn = receipt.get("rrn", "")
    amount = receipt.get("amount", 0)
    if txn is not None and txn.terminal_id != obs.terminal_id:
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for {money(amount)} names rrn {rrn}, which the host "
                f"holds for terminal {txn.terminal_id}, not {obs.terminal_id}.",
                n,
                (rrn,),
                (seq,),
            )
        ]
    if txn is None or (not live_charge(txn) and not obs.credits.void_asked(txn.rrn)):
        problem = (
            "the host has no such transaction"
            if txn is None
            else (f"the host's transaction is {txn.status}")
        )
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for {money(amount)} (rrn {rrn or 'none'}) was printed "
                f"but {problem}.",
                n or (obs.intent_of(txn) if txn is not None else 0),
                (rrn,) if rrn else (),
                (seq,),
            )
        ]
    key = receipt.get("idem_key", "")
    if key and txn.idem_key and key != txn.idem_key:
        # The RRN is real but belongs to another sale: the approval was another
        # request's answer (replayed or spliced), and this sale has no record.
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt for sale {key} names rrn {rrn}, which the host "
                f"holds for another sale ({txn.idem_key}).",
                n or obs.intent_of(txn),
                (rrn,),
                (seq,),
            )
        ]
    owner = obs.intent_of(txn)
    if n and owner and n != owner:
        # The key on the receipt was reused: the host's record is an earlier
        # customer's charge, the customer holding this receipt paid nothing.
        return [
            Violation(
                "no-receipt-without-record",
                f"an APPROVED receipt printed for intent {n} names rrn {rrn}, which is "
                f"intent {owner}'s charge: intent {n} has no record of its own.",
                n,
                (rrn,),
                (seq,),
            )
        ]
    out: list[Violation] = []
    o = obs.intents.get(n) if n else None
    if o is not None and not o.shown_approved() and o.accepted():
        shown = o.accepted()[-1]
        out.append(
            Violation(
                "no-receipt-without-record",
                f"intent {n} was shown {shown.outcome.upper()}, yet an APPROVED receipt "
                f"(rrn {rrn}) was printed for it.",
                n,
                (rrn,),
                (shown.seq, seq),
            )
        )
    last4 = receipt.get("pan_last4", "")
    if last4 and txn.pan and txn.pan[-4:] != last4:
        out.append(
            Violation(
                "no-receipt-without-record",
                f"receipt rrn {rrn} shows card ...{last4} but the host charged card "
                f"...{txn.pan[-4:]} under that rrn.",
                owner,
                (rrn,),
                (seq,),
            )
        )
    if base_amount(txn) != amount:
        out.append(
            Violation(
                "amount-integrity",
                f"receipt rrn {txn.rrn} says {money(amount)} but the host authorised "
                f"{money(base_amount(txn))}.",
                owner,
                (txn.rrn,),
                (seq,),
            )
        )
    return out


def judge_run(obs: Observations, host: Acquirer) -> list[Violation]:
    """Whole-run invariants: settlements, the ledger, and whether the run came to rest."""
    out: list[Violation] = []
    for s in host.settlements():
        if s.matched or s.terminal_id != obs.terminal_id:
            continue
        diff = ", ".join(f"stan {i.stan} {money(i.amount)}" for i in s.differing[:10])
        out.append(
            Violation(
                "batch-reconciles",
                f"batch {s.batch_no}: the terminal counted {s.terminal_count} "
                f"{'sale' if s.terminal_count == 1 else 'sales'} for "
                f"{money(s.terminal_amount)}, the host {s.host_count} for "
                f"{money(s.host_amount)}; differing: {diff or 'none listed'}.",
                seqs=(obs.batch.seqs[s.batch_no],) if s.batch_no in obs.batch.seqs else (),
            )
        )
    total = host.ledger_sum()
    if total != 0:
        out.append(
            Violation(
                "ledger-balances",
                f"the host's double-entry ledger sums to {money(total)} instead of 0.00.",
            )
        )
    end = obs.end
    for seq, t_ms in obs.batch.asked:
        # Asked after the last fault: it must be settled (a 0510 with RC 00 or 95)
        # before the run comes to rest, or within the settling bound.
        rested = end.get("quiet", True) or end["t_ms"] - t_ms >= obs.settle_within_ms
        if end and t_ms > obs.last_fault_ms and rested:
            out.append(
                Violation(
                    "eventually-settles",
                    f"a batch close asked for at {t_ms} ms, after the last fault, was never "
                    "answered: no 0510 settling it (RC 00 or 95) reached the terminal "
                    "before the run came to rest.",
                    seqs=(seq,),
                    klass=LIVENESS,
                )
            )
            break
    for batch_no, answered, sent in obs.batch.ignored[:1]:
        out.append(
            Violation(
                "eventually-settles",
                f"batch {batch_no} was answered (line {answered}) with no fault since it "
                f"was sent, yet the terminal sent it again (line {sent}): it ignored the "
                "answer and its batch never closes.",
                seqs=(answered, sent),
                klass=LIVENESS,
            )
        )
    if end and not end.get("quiet", True):
        out.append(
            Violation(
                "eventually-settles",
                f"the run hit its limit at {end['t_ms']} ms with {end.get('pending', 0)} "
                "events still pending: something never came to rest.",
                seqs=(end["seq"],),
                klass=LIVENESS,
            )
        )
    return out


def _seqs_for(obs: Observations, txns: Iterable[HostTxn]) -> tuple[int, ...]:
    out = []
    for t in txns:
        s = obs.host_seq_by_rrn.get(t.rrn) or obs.send_seq_by_key.get(t.idem_key)
        if s:
            out.append(s)
    return tuple(sorted(out))


DESCRIPTIONS: dict[str, str] = {
    "no-duplicate-charge": "per intent, net money taken <= the amount entered",
    "no-charge-on-failure": (
        "an intent shown declined/failed (and not retried) has zero net debit; the host "
        "refunds no more of a sale than the terminal showed REFUNDED, and captures or tips "
        "nothing it did not show"
    ),
    "amount-integrity": (
        "entered = sent = authorised = receipt; no zero/negative sale is sent; a capture is "
        "what was asked, a tip what was keyed"
    ),
    "receipt-for-every-charge": (
        "every approved charge has a printed receipt, or a pending one still shown "
        "as owed after every reboot"
    ),
    "no-receipt-without-record": (
        "every APPROVED receipt matches a live host charge of this terminal (RRN, amount, "
        "card) of the customer it is printed for; none for a sale shown declined/failed"
    ),
    "approved-means-charged": (
        "every APPROVED display is backed by a live host charge of that intent (the RRN it "
        "names); a sale shown VOIDED / REFUNDED / COMPLETED / TIP ADDED is reversed / "
        "refunded / captured / at that total at the host"
    ),
    "one-terminal-per-charge": (
        "in a world of several terminals, no host charge (RRN) is shown or printed as "
        "approved at two terminals"
    ),
    "batch-reconciles": "terminal batch totals = host settlement totals",
    "no-over-credit": (
        "the credits for one sale (refunds, plus a reversal) never exceed the sale, and "
        "its refunds never exceed what the cashier asked to give back"
    ),
    "ledger-balances": "the host's double-entry ledger sums to zero",
    "offline-uploaded": (
        "every offline approval is within the floor and count limits, and is uploaded "
        "(booked by the host) or visibly expired before its deadline"
    ),
    "eventually-settles": (
        "after the last fault every intent reaches a final (truthful) state and every "
        "batch close asked for is settled (a 0510 with RC 00 or 95), in time"
    ),
}
