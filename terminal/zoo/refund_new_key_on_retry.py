"""refund-new-key-on-retry: a refund that got no answer is sent again under a new key.

The cashier refunds part of an earlier sale; the 0210 is lost, the terminal times out
and sends the refund again, minting a fresh idempotency key for the retry (as its
purchase path once did). The host cannot tell the retry from a second refund of the
same sale and credits the card twice.
Real-world failure: a refund credited twice (the merchant pays it back twice).
Invariant that catches it: ``no-over-credit``.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import Message
from terminal.firmware import FEATURE_REFUND, Effect
from terminal.refund_flow import RefundJob
from terminal.zoo.classic import ClassicFirmware


class RefundNewKeyOnRetryFirmware(ClassicFirmware):
    """Retries a refund under a new key each time."""

    features = frozenset({FEATURE_REFUND})

    def _refund_resend_key(self, job: RefundJob) -> str:
        return f"{job.key}-{self._refund_tries}"  # the flaw: a new key per retry

    def _on_refund_response(self, msg: Message) -> list[Effect]:
        # It matches answers by STAN, so the retry's answer is taken for the refund's.
        job = next((j for j in self._refunds.values() if j.stan == msg.stan), None)
        if job is not None:
            msg = replace(msg, idem_key=job.key)
        return super()._on_refund_response(msg)
