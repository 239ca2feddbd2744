"""Infer stage (people): purchases, cashier steps, cards and receipt checks."""

from collections import defaultdict
from dataclasses import replace

import faults
from acquirer.catalogue import (
    CATALOGUE_CARDS,
    PAN_APPROVE,
    amount_rule,
)
from acquirer.protocol import MTI_ADVICE, MTI_PREAUTH, MTI_PURCHASE
from scenarios.model import (
    CardSpec,
    Step,
)

from .ids import is_pan, sim_pan
from .infer import _consumed_runs
from .model import _Purchase
from .offline import offline_keys
from .parse import Entry, Log

# A card is sent in a purchase (or refund), a pre-authorisation and an offline sale's
# advice (and in a completion or tip, which the host decides on the hold's or sale's).
_CARD_MTIS = (MTI_PURCHASE, MTI_PREAUTH, MTI_ADVICE)
# Host actions that take money from a card: a sale's charge, a pre-authorisation's hold.
_CHARGES = ("charge", "hold")

FINAL_OUTCOMES = ("approved", "declined", "failed")
_REFUSED = ("decline", "removed")  # what a chip card answers instead of accepting
PARTIAL_RC = "10"  # approved for part of the amount (a partial approval)

# The cashier retries a FAILED sale within this time, or it is a new customer.
RETRY_WINDOW_MS = 120_000


def _people(
    tlog: Log,
    origin: int,
    plan: list[tuple[int, faults.Fault]],
    notes: list[str],
    unexplained: list[str],
) -> tuple[list[_Purchase], list[Step], bool]:
    """Purchases (one per keyed amount, except a restart after a power cut), batch
    closes and reprints the cashier asked for, and reader/keypad/printer faults."""
    reader = _PeopleReader(tlog, origin, plan, notes, unexplained)
    for e in tlog.entries:
        reader.entry(e)
    return reader.finish()


class _PeopleReader:
    """`_people`'s walk through one terminal log, entry by entry."""

    def __init__(
        self,
        tlog: Log,
        origin: int,
        plan: list[tuple[int, faults.Fault]],
        notes: list[str],
        unexplained: list[str],
    ) -> None:
        self.tlog, self.origin, self.plan = tlog, origin, plan
        self.notes, self.unexplained = notes, unexplained
        self.purchases: list[_Purchase] = []
        self.current: _Purchase | None = None
        self.finished = True  # the current purchase reached a final display
        self.rebooted = False
        self.attempt = 0
        self.taps = 0
        self.attempt_cards: list[Entry] = []
        self.attempt_confirms: list[Entry] = []
        self.batch_closes: list[Entry] = []
        self.reprints: list[Entry] = []
        self.pending_seen = False
        self.misreads: list[tuple[int, int, int]] = []
        self.last_final = ("", 0)  # the current purchase's last final display and its time
        self.retry_entry: Entry | None = None  # an amount keyed as a retry, until its card read
        self.mapped: set[str] = set()

    def entry(self, e: Entry) -> None:
        t = e.ts_ms - self.origin
        if e.event == "power" and e.data["state"] == "on" and t > 0:
            self.rebooted = True
        elif e.event == "amount_keyed":
            self._amount_keyed(e, t)
        elif e.event == "card_read":
            self._card_read(e, t)
        elif e.event == "key" and e.data["key"] == "confirm":
            self.attempt_confirms.append(e)
        elif e.event == "key" and e.data["key"] == "batch_close":
            self.batch_closes.append(e)
        elif e.event == "key" and e.data["key"] == "reprint":
            if not self.pending_seen:
                self.reprints.append(e)
        elif e.event == "display":
            self._display(e, t)
        elif e.event == "print" and e.data["status"] != "ok":
            self._print_fault(e, t)

    def _close_attempt(self) -> None:
        tlog, attempt = self.tlog, self.attempt
        good = [c for c in self.attempt_cards if c.data["pan"]]
        if len(good) >= 2:
            f = faults.build_fault(
                "double_tap", {"nth": attempt, "gap_ms": good[1].ts_ms - good[0].ts_ms}
            )
            self.plan.append((good[0].ts_ms - self.origin, f))
            self.notes.append(f"{tlog.path}:{good[1].line}: card read twice -> {f.describe()}")
        if len(self.attempt_confirms) >= 2:
            c0, c1 = self.attempt_confirms[0], self.attempt_confirms[1]
            f = faults.build_fault(
                "double_confirm", {"nth": attempt, "gap_ms": c1.ts_ms - c0.ts_ms}
            )
            self.plan.append((c0.ts_ms - self.origin, f))
            self.notes.append(f"{tlog.path}:{c1.line}: confirm pressed twice -> {f.describe()}")

    def _amount_keyed(self, e: Entry, t: int) -> None:
        if self.attempt:
            self._close_attempt()
        self.attempt += 1
        self.attempt_cards, self.attempt_confirms = [], []
        gap = t - self.last_final[1]
        current = self.current
        if current is not None and not self.finished and self.rebooted:
            self.notes.append(
                f"{self.tlog.path}:{e.line}: amount keyed again after a reboot: "
                "same purchase [sure]"
            )
        elif (
            current is not None
            and self.last_final[0] == "failed"
            and int(e.data["amount"]) == current.amount
            and 0 <= gap <= RETRY_WINDOW_MS
        ):
            # The cashier tries the same sale again after FAILED: one intent, as
            # the world's people.retry_on_failed models it. A different card on
            # the retry turns it back into a new customer (_card_read).
            current.retry_gaps.append(gap)
            self.retry_entry = e
        else:
            self.current = _Purchase(
                t, int(e.data["amount"]), "", e.line, preauth=e.data.get("preauth") is True
            )
            self.purchases.append(self.current)
        self.finished = False
        self.rebooted = False
        self.last_final = ("", 0)

    def _card_read(self, e: Entry, t: int) -> None:
        tlog = self.tlog
        self.taps += 1
        self.attempt_cards.append(e)
        if not e.data["pan"]:
            self.misreads.append((self.taps, t, e.line))
            return
        pan = sim_pan(str(e.data["pan"]))
        if pan != str(e.data["pan"]) and pan not in self.mapped:
            self.mapped.add(pan)
            self.notes.append(
                f"{tlog.path}:{e.line}: card {e.data['pan']} is masked: replayed as the "
                f"synthetic test card {pan} [sure]"
            )
        retry, current = self.retry_entry, self.current
        if retry is not None and current is not None and pan != current.card:
            current.retry_gaps.pop()
            current = self.current = _Purchase(
                retry.ts_ms - self.origin,
                int(retry.data["amount"]),
                pan,
                retry.line,
                preauth=retry.data.get("preauth") is True,
            )
            self.purchases.append(current)
        elif retry is not None and current is not None:
            self.notes.append(
                f"{tlog.path}:{retry.line}: same amount and card "
                f"{current.retry_gaps[-1]} ms after FAILED: the cashier retried the "
                "same sale [likely]"
            )
        self.retry_entry = None
        if current is not None and not current.card:
            current.card = pan

    def _display(self, e: Entry, t: int) -> None:
        outcome = str(e.data["outcome"])
        if outcome == "receipt-pending":
            self.pending_seen = True
        if self.current is not None and outcome in (
            "approved",
            "declined",
            "failed",
            "receipt-pending",
        ):
            self.current.displays.append(outcome)
            if outcome != "receipt-pending":
                self.finished = True
                self.last_final = (outcome, t)

    def _print_fault(self, e: Entry, t: int) -> None:
        kind = {
            "jammed": "printer_jam",
            "no_paper": "paper_out",
            "failed": "print_failure",
        }.get(str(e.data["status"]))
        if kind is None:
            self.unexplained.append(
                f"{self.tlog.path}:{e.line}: unknown print status {e.data['status']!r}"
            )
            return
        f = faults.build_fault(kind, {"nth": _job_index(self.tlog, e)})
        self.plan.append((t, f))
        self.notes.append(f"{self.tlog.path}:{e.line}: print {e.data['status']} -> {f.describe()}")

    def finish(self) -> tuple[list[_Purchase], list[Step], bool]:
        tlog, notes = self.tlog, self.notes
        if self.attempt:
            self._close_attempt()
        for nth, count, t, line in _consumed_runs(self.misreads):
            f = faults.build_fault("misread", {"nth": nth, "count": count})
            self.plan.append((t, f))
            notes.append(f"{tlog.path}:{line}: card misread -> {f.describe()}")
        kept = _with_cards(tlog, self.purchases, notes, self.unexplained)
        steps, end_of_day = _batch_close_steps(tlog, self.batch_closes, self.origin, notes)
        steps += [Step(e.ts_ms - self.origin, "reprint") for e in self.reprints]
        return kept, steps, end_of_day


_BATCH_MTIS = frozenset({"0500", "0510"})


def _batch_close_steps(
    tlog: Log, closes: list[Entry], origin: int, notes: list[str]
) -> tuple[list[Step], bool]:
    """The batch closes keyed, as steps, and whether the last one is the end-of-day close
    (the scenario's `close_batch`, which comes once the run has come to rest). It is,
    unless the terminal was still busy with something else when it was keyed (an answer
    to another request reached it afterwards): then it stays a step at its own time."""
    if not closes:
        return [], False
    last = closes[-1]
    busy = any(
        e.line > last.line and e.event == "recv" and str(e.data.get("mti")) not in _BATCH_MTIS
        for e in tlog.entries
    )
    kept = closes if busy else closes[:-1]
    steps = [Step(e.ts_ms - origin, "batch_close") for e in kept]
    if busy:
        notes.append(
            f"{tlog.path}:{last.line}: last batch close keyed while another request was in "
            "flight: replayed at its own time, no end-of-day close"
        )
    else:
        notes.append(f"{tlog.path}:{last.line}: last batch close taken as the end-of-day close")
    return steps, not busy


def _with_cards(
    tlog: Log, purchases: list[_Purchase], notes: list[str], unexplained: list[str]
) -> list[_Purchase]:
    """The purchases a card can replay: one with no card read whose every tap
    misread, or that the terminal refused at entry, gets a stand-in card; any other
    with no card read is left out (unexplained)."""
    kept = []
    last = tlog.entries[-1].line + 1 if tlog.entries else 0
    for i, p in enumerate(purchases):
        upto = purchases[i + 1].line if i + 1 < len(purchases) else last
        if not p.card and _misread_only(tlog, p.line, upto):
            # The card is never known, nor needed (the misread faults eat every tap).
            p.card = (next((q.card for q in purchases if q.card), "")) or PAN_APPROVE
            notes.append(
                f"{tlog.path}:{p.line}: purchase of {p.amount} with no card read (every "
                "tap misread, or refused at entry): "
                f"replayed with card {p.card} [likely: the card is not in the log]"
            )
        if not p.card:
            unexplained.append(
                f"{tlog.path}:{p.line}: purchase of {p.amount} with no card read: left out"
            )
            continue
        kept.append(p)
    return kept


def _misread_only(tlog: Log, start: int, end: int) -> bool:
    """Between lines `start` and `end` the purchase ended (a final display) with no
    card ever read: every tap misread (a `card_read` with an empty PAN), or the
    terminal refused the amount before any tap or message (an amount of 0)."""
    within = [e for e in tlog.entries if start <= e.line < end]
    reads = [e for e in within if e.event == "card_read"]
    final = any(
        e.event == "display" and e.data["outcome"] in ("approved", "declined", "failed")
        for e in within
    )
    refused = not reads and not any(e.event == "send" for e in within)
    return (bool(reads) or refused) and final and not any(e.data["pan"] for e in reads)


def _job_index(tlog: Log, e: Entry) -> int:
    """The ordinal of the print job `e` finished, counted at print start."""
    n = 0
    for x in tlog.entries:
        if x.event == "print_start":
            n += 1
            if x.data["job"] == e.data["job"]:
                return n
    return max(1, n)


def _cards(
    purchases: list[_Purchase],
    tlog: Log,
    hlog: Log,
    unexplained: list[str],
    test_amounts: bool = True,
    chips: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> list[CardSpec]:
    """One card per PAN used; a card the host always declined with one code gets it.
    A decision's card is the one the terminal sent (the host may log it masked, or
    not at all), else the one the host received."""
    decisions: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    recv_pan: dict[tuple[int, str], str] = {}
    for e in hlog.entries:
        if e.event == "recv" and e.data["mti"] in _CARD_MTIS:
            recv_pan[(e.data["stan"], str(e.data.get("idem_key", "")))] = sim_pan(
                str(e.data.get("pan", ""))
            )
    card = ""  # the last card read: a send without a PAN is for it
    for e in tlog.entries:
        if e.event == "card_read" and e.data["pan"]:
            card = sim_pan(str(e.data["pan"]))
        elif e.event == "send" and e.data["mti"] in _CARD_MTIS:
            pan = sim_pan(str(e.data["pan"])) if e.data.get("pan") else card
            if pan:
                recv_pan[(e.data["stan"], str(e.data.get("idem_key", "")))] = pan
    for e in hlog.entries:
        if e.event == "decision" and e.data["mti"] in _CARD_MTIS:
            pan = recv_pan.get((e.data["stan"], str(e.data.get("key", ""))), "")
            decisions[pan].append(
                (str(e.data["action"]), str(e.data.get("rc", "")), int(e.data.get("amount", 0)))
            )
    slow_cards = {c.pan: c.slow_ms for c in CATALOGUE_CARDS}
    chips = {} if chips is None else chips
    notes = [] if notes is None else notes
    out = []
    for pan in sorted({p.card for p in purchases}):
        ds = [d for d in decisions.get(pan, []) if not test_amounts or amount_rule(d[2]) is None]
        rc, balance, partial = _balance(pan, ds, notes, unexplained)
        balance = max(balance, sum(d[2] for d in ds if d[0] in _CHARGES))
        if not is_pan(pan):
            unexplained.append(f"card {pan!r}: not a PAN the simulator accepts")
            continue
        spec = CardSpec(
            pan=pan, balance=balance, rc=rc, slow_ms=slow_cards.get(pan, 0), partial=partial
        )
        out.append(replace(spec, chip=chips[pan]) if pan in chips else spec)
    return out


def _balance(
    pan: str, ds: list[tuple[str, str, int]], notes: list[str], unexplained: list[str]
) -> tuple[str, int, bool]:
    """A card's forced code, balance and partial flag from the host's decisions on it
    (action, rc, amount), in the host's order."""
    charged = [d for d in ds if d[0] in _CHARGES]
    # An offline sale's advice the host declined late counts as a decline.
    declined = {d[1] for d in ds if d[0] in ("decline", "advice-declined")}
    balance = CardSpec().balance
    # A partial approval (RC 10): the issuer took what the card had left.
    if any(d[1] == PARTIAL_RC for d in charged):
        balance = sum(d[2] for d in charged)
        notes.append(f"card {pan}: approved in part (RC 10): balance {balance} [sure]")
        return "", balance, True
    if declined and not charged and len(declined) == 1:
        return declined.pop(), balance, False
    if "51" in declined:
        balance = sum(d[2] for d in charged)
        # The guess explains the log when each decline for funds asked more than was
        # left then.
        left, fits = balance, True
        for action, code, amount in ds:
            left -= amount if action in _CHARGES else 0
            fits = fits and not (code == "51" and action == "decline" and amount <= left)
        (notes if fits else unexplained).append(
            f"card {pan}: declined for funds after charges: balance guessed as {balance}"
            + (" [likely: any balance the declines exceeded fits]" if fits else "")
        )
    return "", balance, False


def chip_answers(
    tlog: Log, origin: int, plan: list[tuple[int, faults.Fault]], notes: list[str]
) -> dict[str, str]:
    """PAN -> the chip's answer a card gave (`decline`, `removed`): a sale the host
    approved (a 0210 RC 00 received) then shown DECLINED, before any APPROVED, is the
    card declining the approval (EMV second GENERATE AC); "REMOVED" in the text is the
    card pulled too early. A card that refused one approval and accepted another
    refused by a `chip_refusal` fault (the nth completion), added to `plan`."""
    done: list[tuple[str, str, int, int]] = []  # (pan, answer, time, line) per completion
    card, approved_online = "", False
    for e in tlog.entries:
        d = e.data
        if e.event == "amount_keyed":
            card, approved_online = "", False
        elif e.event == "card_read" and d["pan"]:
            card, approved_online = sim_pan(str(d["pan"])), False
        elif e.event == "recv" and d["mti"] == "0210" and d.get("rc") == "00" and card:
            approved_online = True
        elif e.event == "display" and d["outcome"] in FINAL_OUTCOMES and approved_online:
            text = str(d.get("text", "")).upper()
            answer = {"approved": "", "failed": "?"}.get(str(d["outcome"]), "decline")
            answer = "removed" if answer == "decline" and "REMOVED" in text else answer
            done.append((card, answer, e.ts_ms - origin, e.line))
            approved_online = False
    answers: dict[str, set[str]] = defaultdict(set)
    for pan, answer, _, _ in done:
        answers[pan].add(answer)
    out = {p: next(iter(a)) for p, a in answers.items() if len(a) == 1 and a <= set(_REFUSED)}
    refused = [
        (n, t, line, answer)
        for n, (pan, answer, t, line) in enumerate(done, 1)
        if answer in _REFUSED and pan not in out
    ]
    for eaten, (n, t, line, answer) in enumerate(refused):
        f = faults.build_fault("chip_refusal", {"nth": n - eaten, "reason": answer})
        plan.append((t, f))
        notes.append(
            f"{tlog.path}:{line}: the chip refused an approval its card accepted another "
            f"time -> {f.describe()} [likely]"
        )
    return out


def _prints_without_approval(
    tlog: Log, hlog: Log, plan: list[tuple[int, faults.Fault]], unexplained: list[str]
) -> None:
    """An approved receipt whose RRN the host never approved, with no forged response to
    explain it, is a print-path fault in the firmware: listed, never guessed."""
    approved = {
        str(e.data.get("rrn", ""))
        for e in hlog.entries
        if e.event == "decision" and e.data.get("rc") in ("00", PARTIAL_RC)
    }
    forged = {f.rrn for _, f in plan if f.KIND == "forge"}  # type: ignore[attr-defined]
    offline = offline_keys(tlog)
    for e in tlog.entries:
        if e.event != "print" or e.data["status"] != "ok":
            continue
        receipt = e.data.get("receipt", {})
        if not isinstance(receipt, dict) or receipt.get("status") != "approved":
            continue
        rrn = str(receipt.get("rrn", ""))
        if rrn in approved:
            continue
        if rrn in forged:
            continue
        if not rrn and str(receipt.get("idem_key", "")) in offline:
            continue  # an offline sale's receipt: approved by the terminal, uploaded later
        unexplained.append(
            f"{tlog.path}:{e.line}: approved receipt rrn {rrn!r} amount {receipt.get('amount')} "
            "has no host approval and no forged response explains it: a print-path fault "
            "in the firmware (it prints without a host approval), not a network fault"
        )
