"""tip-added-twice: a tip adjust that got no answer is sent again with the tip added
to the total once more.

The cashier keys the tip the diner wrote on the slip; the terminal sends the sale's
total plus the tip, the host sets it but the 0230 is lost. The retry adds the tip to
the total again (and goes under a new key, as a new adjustment): the host sets the sale
to its amount plus twice the tip. The terminal shows TIP ADDED with the total it meant.
Real-world failure: a wrong amount (the tip is charged twice).
Invariant that catches it: ``amount-integrity``.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import Message
from terminal.adjust_flow import KIND_TIP, AdjustJob
from terminal.firmware import FEATURE_PREAUTH, Effect
from terminal.zoo.classic import ClassicFirmware


class TipAddedTwiceFirmware(ClassicFirmware):
    """Adds the tip to the total again on every resend of a tip adjust."""

    features = frozenset({FEATURE_PREAUTH})

    def _adjust_resend_key(self, job: AdjustJob) -> str:
        if job.kind != KIND_TIP:
            return job.key
        return f"{job.key}-{self._adjust_tries}"  # a new adjustment, as it sees it

    def _adjust_wire_amount(self, job: AdjustJob) -> int:
        if job.kind != KIND_TIP:
            return job.amount
        return job.amount + (self._adjust_tries - 1) * job.tip  # the flaw

    def _on_adjust_response(self, msg: Message) -> list[Effect]:
        # It matches answers by STAN and takes any amount echoed as its own.
        job = next((j for j in self._adjusts.values() if j.stan == msg.stan), None)
        if job is not None:
            msg = replace(msg, idem_key=job.key, amount=job.amount)
        return super()._on_adjust_response(msg)
