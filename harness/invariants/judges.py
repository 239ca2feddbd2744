"""The judging functions: each invariant as a function of the observations and the
host's books (see `harness.invariants` for how they are fed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from acquirer.host import Acquirer, HostTxn

from .model import LIVENESS, IntentBooks, IntentObs, Violation, intended, money

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
    if o.final in ("declined", "failed") and b.net > 0:
        out.append(
            Violation(
                "no-charge-on-failure",
                f"intent {n} was shown {o.final.upper()} but the host kept "
                f"{money(b.net)} (rrn {', '.join(t.rrn for t in b.live)}).",
                n,
                tuple(t.rrn for t in b.live),
                (o.final_seq, *_seqs_for(obs, b.live)),
            )
        )
    if o.final == "approved":
        for txn in b.live:
            if txn.rrn in obs.printed or txn.rrn in obs.pending_seq:
                continue  # printed, or visibly pending: a reprint completes it
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


def judge_receipt(
    obs: Observations, seq: int, receipt: dict[str, Any], txn: HostTxn | None
) -> list[Violation]:
    """An APPROVED receipt must match a live host transaction, amount included."""
    rrn = receipt.get("rrn", "")
    amount = receipt.get("amount", 0)
    if txn is None or txn.status != "approved":
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
                obs.intent_of(txn) if txn is not None else 0,
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
                obs.intent_of(txn),
                (rrn,),
                (seq,),
            )
        ]
    if txn.amount != amount:
        return [
            Violation(
                "amount-integrity",
                f"receipt rrn {txn.rrn} says {money(amount)} but the host authorised "
                f"{money(txn.amount)}.",
                obs.intent_of(txn),
                (txn.rrn,),
                (seq,),
            )
        ]
    return []


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
                seqs=(obs.batch_seqs[s.batch_no],) if s.batch_no in obs.batch_seqs else (),
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
    "no-charge-on-failure": "an intent finally shown declined/failed has zero net debit",
    "amount-integrity": "entered = sent = authorised = receipt; no zero/negative sale is sent",
    "receipt-for-every-charge": "every approved charge has a printed or visibly pending receipt",
    "no-receipt-without-record": "every APPROVED receipt matches a live host transaction",
    "batch-reconciles": "terminal batch totals = host settlement totals",
    "ledger-balances": "the host's double-entry ledger sums to zero",
    "eventually-settles": "after the last fault every intent reaches a final state in time",
}
