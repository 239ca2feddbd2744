"""What the trace shows of batch closes, for `batch-reconciles` and for the rule that a
correct terminal may refuse a sale while a close is under way (harness/invariants):
closes asked for and not answered yet, the last upload sent, each batch's first
upload, fault-free answers and uploads sent again after one (an ignored answer), and
the host's answer to each batch. Moved out of `Observations` unchanged."""

from __future__ import annotations

from collections import deque
from typing import Any

from acquirer.protocol import RC_APPROVED, RC_RECONCILE_ERROR

# Batch numbers whose first upload is remembered (a run closes few batches).
BATCH_NOS_KEPT_MAX = 256
# Unanswered batch-close requests remembered (the oldest matter most).
BATCH_ASKED_MAX = 16
# At most this many uploads sent again after an answer are kept.
IGNORED_KEPT_MAX = 100


class BatchObs:
    """Batch closes in a terminal's trace (see the module doc)."""

    def __init__(self) -> None:
        # Batch closes asked for (input delivered) and not yet answered: seq, t_ms.
        self.asked: deque[tuple[int, int]] = deque(maxlen=BATCH_ASKED_MAX)
        # A batch close asked for and not answered in time yet: while it is, a correct
        # terminal refuses new sales (the batch must not change under the upload).
        self.outstanding = False
        self.last_sent_ms = -1
        self.last_sent_no = -1
        # Batch uploads: faults seen (a counter) when each batch_no was first sent,
        # answers that reached the terminal with no fault since, and batches sent
        # again after such an answer (batch_no, answer seq, send seq).
        self.faults_seen = 0
        self.first_sent: dict[int, int] = {}
        # batch_no -> (seq of its fault-free answer, faults seen by then)
        self.answered: dict[int, tuple[int, int]] = {}
        self.ignored: list[tuple[int, int, int]] = []
        self.seqs: dict[int, int] = {}  # batch_no -> seq of the host's answer

    def asked_for(self, seq: int, t_ms: int) -> None:
        """The cashier asked for a batch close."""
        self.asked.append((seq, t_ms))
        self.outstanding = True
        # Sending a batch again because the cashier asked again (after the
        # terminal gave up waiting, e.g. on a slow host) is not ignoring an answer.
        self.answered.clear()

    def answer(self, msg: dict[str, Any], seq: int, t_ms: int, response_timeout_ms: int) -> None:
        """A 0510 reached the terminal."""
        # A batch close is answered when a 0510 that settles it (RC 00 or 95)
        # reaches the terminal; a refusal (RC 30: a malformed upload, e.g. more
        # items than one 0500 may carry) leaves the batch open for ever.
        settled = msg.get("rc") in (RC_APPROVED, RC_RECONCILE_ERROR)
        if settled:
            self.asked.clear()
        b = msg.get("batch_no", 0)
        # Answered in time (within the terminal's response timeout of the last
        # upload): the close is over and new sales must be accepted again. A
        # later answer may come after the terminal gave up waiting.
        # A late answer to an earlier batch (a resend of it, answered after the
        # next close was asked for) does not end the close under way.
        in_time = t_ms - self.last_sent_ms <= response_timeout_ms
        current = b == self.last_sent_no
        if in_time and current and settled:
            self.outstanding = False
        clean = self.first_sent.get(b) == self.faults_seen
        if clean and settled:
            self.answered.setdefault(b, (seq, self.faults_seen))

    def sent(self, batch_no: int, seq: int, t_ms: int) -> None:
        """A 0500 left the terminal. Sending a batch again after a fault-free answer
        closed it, with no fault since (a power cut before the terminal journaled the
        close is a reason to ask again), means the terminal ignored that answer."""
        self.last_sent_ms = t_ms
        self.last_sent_no = batch_no
        answered = self.answered.get(batch_no)
        if answered is not None:
            answer_seq, faults_then = answered
            if faults_then == self.faults_seen and len(self.ignored) < IGNORED_KEPT_MAX:
                self.ignored.append((batch_no, answer_seq, seq))
            return
        if batch_no not in self.first_sent:
            if len(self.first_sent) >= BATCH_NOS_KEPT_MAX:
                del self.first_sent[next(iter(self.first_sent))]
            self.first_sent[batch_no] = self.faults_seen

    def host_answered(self, batch_no: int, seq: int) -> None:
        """The host's record of its answer to `batch_no`."""
        self.seqs.setdefault(batch_no, seq)
