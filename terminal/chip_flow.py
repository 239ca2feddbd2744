"""The reference firmware's chip completion (EMV second GENERATE AC).

A terminal configured with `chip` reads cards by chip. The host's approval of a card
sale is not final until the card accepts it: the firmware journals the approval as
`chip_pending`, hands it to the card (`ChipComplete`) and waits for `ChipResult`.

* ok: the approval is journaled as `approved`, shown and printed as usual;
* declined (issuer authentication failed) or removed (the card left the reader too
  early), or no answer within `CHIP_TIMEOUT_MS`: the sale is declined and reversed
  with reason 96 (approved, but the terminal failed to finish), journaled before
  DECLINED is shown, and retried until the host answers, like every reversal;
* a power cut while the card completes: at boot the sale is reversed (reason 96) and
  FAILED shown, since the card's verdict is lost;
* a power cut after the card refused, before DECLINED was shown: at boot the last
  sale's reversal (reason 96) is still owed, so DECLINED is shown again.

`ChipFlow` is a base of `ReferenceFirmware` and uses its state and its receipt and
reversal steps; the names it needs from there are declared below for the type
checker only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acquirer.protocol import REVERSAL_NOT_COMPLETED
from terminal.firmware import (
    CHIP_DECLINED,
    CHIP_REMOVED,
    CancelTimer,
    ChipComplete,
    ChipResult,
    Display,
    Effect,
    FirmwareConfig,
    JournalAppend,
    Outcome,
    SetTimer,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from terminal.reference import Approval, Sale

CHIP_TIMER = "chip"  # waiting for the card's ChipResult
# The card answers a second GENERATE AC in well under a second; a reader that has not
# answered in this long has lost the card.
CHIP_TIMEOUT_MS = 5_000
_CHIP_TEXT = {
    CHIP_DECLINED: "DECLINED - CARD DECLINED",
    CHIP_REMOVED: "DECLINED - CARD REMOVED TOO EARLY",
}


def chip_pending_record(approval: Approval) -> dict[str, Any]:
    """The journal record of an approval the card has not accepted yet."""
    return {**approval.record(), "type": "chip_pending"}


class ChipFlow:
    """The chip completion steps of `ReferenceFirmware` (see the module doc)."""

    if TYPE_CHECKING:
        config: FirmwareConfig
        _sales: dict[str, Sale]
        _chip_key: str
        _chip_approval: Approval | None
        _reversals: dict[str, Sale]
        _reversal_reasons: dict[str, str]

        def _journal(self, record: Mapping[str, Any]) -> JournalAppend: ...
        def _approve(self, sale: Sale, approval: Approval) -> list[Effect]: ...
        def _after_sale(self) -> list[Effect]: ...
        def _record_reversal_pending(self, sale: Sale, reason: str = "") -> list[Effect]: ...
        def _enqueue_reversal(self, sale: Sale, reason: str = "") -> list[Effect]: ...
        def _mark_declined(self, sale: Sale, rc: str) -> list[Effect]: ...

    def _chip_start(self, sale: Sale, approval: Approval) -> list[Effect]:
        """The host approved a chip card sale: journal it as pending, ask the card."""
        self._chip_key = sale.key
        self._chip_approval = approval
        return [
            self._journal(chip_pending_record(approval)),
            Display(Outcome.PENDING, "DO NOT REMOVE CARD"),
            ChipComplete(sale.key),
            SetTimer(CHIP_TIMER, CHIP_TIMEOUT_MS),
        ]

    def _chip_recover(self, unresolved: list[Sale]) -> list[Effect]:
        """At boot: if the last sale is a chip decline whose reversal is still owed,
        the customer may not have seen DECLINED: show it again."""
        if not self._sales:
            return []
        last = max(self._sales.values(), key=lambda sale: sale.sale_no)
        owed = last.key in self._reversals and last not in unresolved
        if owed and self._reversal_reasons.get(last.key) == REVERSAL_NOT_COMPLETED:
            return [Display(Outcome.DECLINED, "LAST SALE DECLINED - REVERSING")]
        return []

    def _on_chip_result(self, event: ChipResult) -> list[Effect]:
        if not self._chip_key or event.key != self._chip_key:
            return []  # not the card being completed (a late or stray answer)
        if event.ok:
            return self._chip_done(None)
        return self._chip_done(event.reason if event.reason in _CHIP_TEXT else CHIP_DECLINED)

    def _on_chip_timeout(self) -> list[Effect]:
        """No answer from the reader: the card is gone."""
        return self._chip_done(CHIP_REMOVED) if self._chip_key else []

    def _chip_done(self, failure: str | None) -> list[Effect]:
        """The card's verdict: None (accepted) completes the sale, else it is reversed."""
        approval = self._chip_approval
        sale = self._sales.get(self._chip_key)
        self._chip_key = ""
        self._chip_approval = None
        effects: list[Effect] = [CancelTimer(CHIP_TIMER)]
        if approval is None or sale is None:
            return effects
        if failure is None:
            effects += self._approve(sale, approval)
        else:
            effects += self._chip_failed(sale, failure)
        return effects + self._after_sale()

    def _chip_failed(self, sale: Sale, failure: str) -> list[Effect]:
        """The card refused the approval: the reversal is journaled (with its reason)
        before DECLINED is shown, so no power cut can leave the charge standing."""
        effects = self._record_reversal_pending(sale, REVERSAL_NOT_COMPLETED)
        effects += self._mark_declined(sale, "chip-" + failure)
        effects.append(Display(Outcome.DECLINED, _CHIP_TEXT[failure]))
        return effects + self._enqueue_reversal(sale, REVERSAL_NOT_COMPLETED)
