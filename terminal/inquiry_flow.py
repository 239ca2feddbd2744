"""The reference firmware's status-inquiry flows (moved out of terminal/reference.py).

Two uses of the status inquiry (0600/0610, docs/protocol.md):

* a card sale whose last send went unanswered: ask the host before reversing it
  (`_inquire`, `_on_card_inquiry_answer`);
* a wallet sale whose outcome is not known ("user paying", a system error, no answer):
  poll every `WALLET_QUERY_DELAY_MS`, `WALLET_QUERIES_MAX` times, print from the answer
  that says paid, else cancel the order (`_wallet_pending` ... `_on_inquiry_answer`).

`InquiryFlow` is a base of `ReferenceFirmware` and uses its state and its sale, receipt
and reversal steps; the names it needs from there are declared below for the type
checker only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from acquirer.protocol import (
    MTI_INQUIRY,
    PROC_WALLET,
    RC_APPROVED,
    RC_DO_NOT_HONOUR,
    RC_FORMAT_ERROR,
    RC_IN_PROGRESS,
    RC_INSUFFICIENT_FUNDS,
    RC_INVALID_AMOUNT,
    RC_ISSUER_UNAVAILABLE,
    RC_PARTIAL,
    RC_STALE,
    RC_SYSTEM_ERROR,
    RC_UNABLE_TO_LOCATE,
    Message,
    sign,
)
from terminal.firmware import CancelTimer, Display, Effect, FirmwareConfig, Outcome, Send, SetTimer

if TYPE_CHECKING:
    from terminal.reference import Sale

WALLET_TIMER = "wallet-query"  # a wallet sale with an unknown outcome: next inquiry due
INQUIRY_TIMER = "inquiry"  # a card sale's last send went unanswered: waiting for the 0610
# Wallet sales: an inquiry every 5 s, 6 of them (30 s, within the wallets' advice of
# polling every 3-5 s for about 30 s), then the cancel.
WALLET_QUERY_DELAY_MS = 5_000
WALLET_QUERIES_MAX = 6

# Response codes after which nothing was charged *for this frame* and the host did
# not store the key, so a resend with the same key is safe. RC 30 belongs here: it
# says one copy arrived damaged, not what became of an earlier copy (found by the
# fuzzer: a corrupted repeat of an approved sale was shown DECLINED).
# RC 63 too: the host refused a copy that arrived outside its freshness window
# (held back in the network); the resend carries a fresh transmission time.
_TRANSIENT_RCS = frozenset({RC_ISSUER_UNAVAILABLE, RC_SYSTEM_ERROR, RC_FORMAT_ERROR, RC_STALE})
# What a 0610 may report for a sale the host declined and stored (nothing charged,
# and the key is taken: no late copy of the 0200 can charge it).
_STORED_DECLINES = frozenset({RC_DO_NOT_HONOUR, RC_INVALID_AMOUNT, RC_INSUFFICIENT_FUNDS})


class InquiryFlow:
    """The inquiry steps of `ReferenceFirmware` (see the module doc)."""

    if TYPE_CHECKING:
        config: FirmwareConfig
        _sale: Sale | None
        _request: Message | None
        _sale_timer: str
        _sends: int
        _queries: int

        def _close_sale(self) -> list[Effect]: ...
        def _after_sale(self) -> list[Effect]: ...
        def _give_up(self) -> list[Effect]: ...
        def _on_approved(self, sale: Sale, msg: Message) -> list[Effect]: ...
        def _decline(self, sale: Sale, rc: str) -> list[Effect]: ...
        def _wire_amount(self, amount: int) -> int: ...

    def _inquire(self) -> list[Effect]:
        """The outcome is unknown: ask the host what became of the sale (0600) before
        reversing it. A sale the host approved is then completed, not reversed."""
        sale, request = self._sale, self._request
        if sale is None or request is None:
            return []
        self._sale_timer = INQUIRY_TIMER
        query = self._inquiry(sale, request.processing_code, request.amount)
        return [query, SetTimer(INQUIRY_TIMER, self.config.response_timeout_ms)]

    def _inquiry(self, sale: Sale, processing_code: str, amount: int) -> Send:
        """The signed 0600 asking what became of `sale`."""
        cfg = self.config
        query = Message(
            MTI_INQUIRY,
            cfg.terminal_id,
            cfg.merchant_id,
            sale.stan,
            pan=sale.pan,
            processing_code=processing_code,
            amount=amount,
            orig_stan=sale.stan,
            orig_key=sale.key,
        )
        return Send(sign(query, cfg.mac_key))

    def _on_card_inquiry_answer(self, sale: Sale, msg: Message) -> list[Effect]:
        """A signed 0610 about the card sale in flight: approved is completed from its
        RRN and authorisation code; a stored decline is a decline; anything else
        (not found: the 0200 may still be on its way; in progress; closed) reverses."""
        if self._sale_timer != INQUIRY_TIMER:
            return []
        rc = msg.rc
        if rc in (RC_APPROVED, RC_PARTIAL):
            effects = self._close_sale()
            effects += self._on_approved(sale, msg)
            return effects + self._after_sale()
        if rc in _STORED_DECLINES:
            effects = self._close_sale()
            effects += self._decline(sale, rc)
            return effects + self._after_sale()
        return self._give_up()

    # ------------------------------------------------------------ wallet sales

    def _wallet_pending(self, msg: Message | None) -> list[Effect]:
        """A wallet sale's outcome is not known (`msg` is the 0210 that said so, or
        None after a timeout): poll the status inquiry."""
        if self._sale_timer == WALLET_TIMER:
            return []  # already polling
        timer = self._sale_timer
        self._sale_timer = WALLET_TIMER
        effects: list[Effect] = [CancelTimer(timer)] if timer else []
        return [
            *effects,
            Display(Outcome.PENDING, "WAITING FOR CUSTOMER TO CONFIRM"),
            SetTimer(WALLET_TIMER, WALLET_QUERY_DELAY_MS),
        ]

    def _on_wallet_timer(self) -> list[Effect]:
        """The next inquiry is due; after the last one, cancel the order."""
        sale = self._sale
        if sale is None:
            return []
        if self._queries >= WALLET_QUERIES_MAX:
            return self._wallet_unpaid()
        self._queries += 1
        query = self._inquiry(sale, PROC_WALLET, self._wire_amount(sale.amount))
        return [query, SetTimer(WALLET_TIMER, WALLET_QUERY_DELAY_MS)]

    def _wallet_unpaid(self) -> list[Effect]:
        """No inquiry said paid: cancel the order (durably, retried until final: a
        paid order is refunded, a waiting one closed), then show FAILED."""
        return self._give_up()

    def _on_inquiry_answer(self, sale: Sale, msg: Message) -> list[Effect]:
        """A signed 0610 about the wallet sale in flight."""
        rc = msg.rc
        if rc == RC_APPROVED:
            effects = self._close_sale()
            effects += self._on_approved(sale, msg)
            return effects + self._after_sale()
        if rc == RC_UNABLE_TO_LOCATE:
            # The host never got the 0200: send it again (same order number).
            if self._sends < self.config.max_sends and self._request is not None:
                self._sends += 1
                return [Send(sign(replace(self._request, repeat=True), self.config.mac_key))]
            return []
        if rc == RC_IN_PROGRESS or rc in _TRANSIENT_RCS:
            return []  # not final yet: the next inquiry will ask again
        # Final and unpaid (closed, reversed, declined): nothing was charged.
        effects = self._close_sale()
        effects += self._decline(sale, rc)
        return effects + self._after_sale()
