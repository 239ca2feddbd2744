"""completion-before-answer: COMPLETED is shown when the completion is queued, and the
queue lives in memory.

The terminal tells the cashier the check-out is done as soon as it has queued the
completion, and keeps its queue of completions in memory only (it is "just an
advice"). The power fails before the host got it: after the reboot the completion is
gone. The guest left with COMPLETED on the screen; the hold is never captured and
expires: the hotel is never paid.
Real-world failure: paid without a record (an orphaned hold).
Invariant that catches it: ``approved-means-charged``.
"""

from __future__ import annotations

from terminal.adjust_flow import KIND_COMPLETION, AdjustJob
from terminal.firmware import FEATURE_PREAUTH, Display, Effect, Outcome
from terminal.zoo.classic import ClassicFirmware


class CompletionBeforeAnswerFirmware(ClassicFirmware):
    """Shows COMPLETED on queueing; keeps completions in memory only."""

    features = frozenset({FEATURE_PREAUTH})

    def _start_adjust(self, job: AdjustJob, text: str) -> list[Effect]:
        if job.kind != KIND_COMPLETION:
            return super()._start_adjust(job, text)
        self._adjusts[job.key] = job  # the flaw: not journaled ...
        shown = Display(Outcome.COMPLETED, "COMPLETED", job.orig_rrn, job.amount)
        return [shown, *self._pump_adjusts()]  # ... and shown before the host answered

    def _adjust_approved(self, job: AdjustJob, rrn: str) -> list[Effect]:
        effects = super()._adjust_approved(job, rrn)
        if job.kind != KIND_COMPLETION:
            return effects
        # Shown already: the answer only updates its books (journaled, unlike the job).
        return [e for e in effects if not isinstance(e, Display)]
