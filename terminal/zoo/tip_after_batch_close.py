"""tip-after-batch-close: tips are taken all day, and the 0230 is read as an
acknowledgement.

The terminal lets the cashier add a tip to any sale it remembers, including sales a
batch close has already settled, and treats every final 0230 as "done": the host
refuses a tip on a settled sale (RC 12: too late to adjust), the terminal shows TIP
ADDED all the same. The merchant believes the tip was collected; it never was.
Real-world failure: a wrong amount (a tip shown collected, never charged).
Invariant that catches it: ``approved-means-charged``.
"""

from __future__ import annotations

from acquirer.protocol import Message
from terminal.adjust_flow import AdjustJob
from terminal.firmware import FEATURE_PREAUTH, Effect
from terminal.zoo.classic import ClassicFirmware


class TipAfterBatchCloseFirmware(ClassicFirmware):
    """Tips settled sales, and shows any final answer to an adjust as done."""

    features = frozenset({FEATURE_PREAUTH})

    def _tip_target(self, rrn: str) -> tuple[str, str, int] | str:
        found = super()._tip_target(rrn)
        ref = self._sale_refs.get(rrn)
        if found == "BATCH CLOSED" and ref is not None:
            return ref.key, ref.pan, ref.amount  # the flaw: a settled sale is tipped
        return found

    def _adjust_refused_shown(self, job: AdjustJob, msg: Message) -> list[Effect] | None:
        return self._adjust_approved(job, msg.rrn)  # the flaw: a refusal shown as done
