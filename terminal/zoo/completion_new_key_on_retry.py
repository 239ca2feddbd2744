"""completion-new-key-on-retry: a completion that got no answer is sent again under a
new key.

The cashier completes a pre-authorisation (a hotel check-out); the host captures it but
the 0230 is lost, the terminal times out and sends the completion again, minting a fresh
idempotency key for the retry. The host holds one completion per hold, so it refuses the
retry (RC 12: already completed) and the terminal shows COMPLETION REFUSED: the cashier
believes the card was not charged and takes payment another way, while the card was.
Real-world failure: "failed" but charged (the guest pays twice).
Invariant that catches it: ``no-charge-on-failure``.
"""

from __future__ import annotations

from dataclasses import replace

from acquirer.protocol import Message
from terminal.adjust_flow import AdjustJob
from terminal.firmware import FEATURE_PREAUTH, Effect
from terminal.zoo.classic import ClassicFirmware


class CompletionNewKeyOnRetryFirmware(ClassicFirmware):
    """Retries a completion (or a tip) under a new key each time."""

    features = frozenset({FEATURE_PREAUTH})

    def _adjust_resend_key(self, job: AdjustJob) -> str:
        return f"{job.key}-{self._adjust_tries}"  # the flaw: a new key per retry

    def _on_adjust_response(self, msg: Message) -> list[Effect]:
        # It matches answers by STAN, so the retry's answer is taken for the job's.
        job = next((j for j in self._adjusts.values() if j.stan == msg.stan), None)
        if job is not None:
            msg = replace(msg, idem_key=job.key)
        return super()._on_adjust_response(msg)
