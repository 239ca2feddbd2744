"""Receipts owed across reboots: a pending receipt must survive every power cut.

A receipt is owed from the moment the terminal shows it as pending (a
RECEIPT_PENDING display naming its RRN) until an approved receipt with that RRN
prints. After every boot the terminal must show that it still owes it: while it
handles the boot (before any other input reaches it) it shows the receipt as
pending or approved again, or starts a print job that turns out to be that
receipt. A terminal that forgot it (a volatile pending list) breaks
`receipt-for-every-charge` even though the receipt was once "visibly pending".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.trace import Record

from .model import Violation

# Records that end the handling of a boot: the next thing that happens to the
# terminal or the world, not one of the boot's own effects (journal, display, send,
# print_start, journal_trim, a fault, or a `cashier` retry decided on the spot when
# the boot shows FAILED).
BOOT_ENDS = frozenset(
    {"input", "deliver", "intent", "print", "end", "lost", "ignored", "step", "host"}
)
# Bounds: receipts owed at once, and boots waiting for their print jobs to report.
OWED_MAX = 4_096
CHECKS_MAX = 256


@dataclass(slots=True)
class BootCheck:
    """One boot: the receipts owed when it started that it has not shown yet."""

    seq: int
    unmet: set[str]
    jobs: set[str] = field(default_factory=set)  # print jobs started while booting
    jobs_done: set[str] = field(default_factory=set)


class OwedReceipts:
    """Streams display, print and boot records; `violations()` judges the boots."""

    def __init__(self) -> None:
        self.owed: dict[str, tuple[int, int]] = {}  # rrn -> (pending display seq, intent)
        self.window: BootCheck | None = None
        self.checks: list[BootCheck] = []

    def before(self, kind: str) -> None:
        """Called for every record before it is handled: a boot's handling ends at
        the first record that is not one of its effects."""
        if self.window is not None and kind in BOOT_ENDS:
            w, self.window = self.window, None
            if w.unmet and len(self.checks) < CHECKS_MAX:
                self.checks.append(w)

    def boot(self, seq: int) -> None:
        self.window = BootCheck(seq, set(self.owed)) if self.owed else None

    def power_off(self) -> None:
        self.window = None  # cut while booting: the next boot is judged instead

    def display(self, outcome: str, rrn: str, seq: int, intent: int) -> None:
        if not rrn:
            return
        if outcome == "receipt-pending":
            if rrn not in self.owed and len(self.owed) >= OWED_MAX:
                del self.owed[next(iter(self.owed))]
            self.owed.setdefault(rrn, (seq, intent))
        if self.window is not None and outcome in ("receipt-pending", "approved"):
            self.window.unmet.discard(rrn)

    def print_start(self, job: str) -> None:
        if self.window is not None:
            self.window.jobs.add(job)

    def printed(self, job: str, rrn: str, ok: bool) -> None:
        if ok and rrn:
            self.owed.pop(rrn, None)
        for check in self.checks:
            if job in check.jobs:
                check.jobs_done.add(job)
                check.unmet.discard(rrn)

    def forget(self, rrn: str) -> None:
        self.owed.pop(rrn, None)

    def violations(self, pending_seq: dict[str, int], rrn_owner: dict[str, int]) -> list[Violation]:
        """One violation per receipt a boot forgot. A boot whose own print jobs have
        not all reported is given the benefit of the doubt (one may be it)."""
        out = []
        for check in self.checks:
            if not check.unmet or not check.jobs <= check.jobs_done:
                continue
            for rrn in sorted(check.unmet):
                since = pending_seq.get(rrn, 0)
                n = rrn_owner.get(rrn, 0)
                out.append(
                    Violation(
                        "receipt-for-every-charge",
                        f"the receipt for rrn {rrn}"
                        + (f" (intent {n})" if n else "")
                        + " was shown as pending, but after the reboot at line "
                        f"{check.seq} the terminal no longer showed it as owed and did "
                        "not print it: the receipt was forgotten.",
                        n,
                        (rrn,),
                        tuple(s for s in (since, check.seq) if s),
                    )
                )
        return out


def record_rrn(rec: Record) -> str:
    """The RRN a print record's receipt pays off (an approved sale's, or a void's or
    refund's: a credit receipt shown pending is owed the same way)."""
    receipt = rec.get("receipt") or {}
    owes = receipt.get("status") in ("approved", "voided", "refunded")
    return str(receipt.get("rrn", "")) if owes else ""
