"""The zoo: deliberately flawed firmwares, one field failure each.

Each is a small subclass of `ReferenceFirmware` overriding one behaviour. Names
are user-facing (`firmware = "zoo:naive-retry"`); the order is the order of
the failure classes in DOMAIN.md.
"""

from __future__ import annotations

from terminal.zoo.batch_counts_reversed import BatchCountsReversedFirmware
from terminal.zoo.chip_decline_no_reversal import ChipDeclineNoReversalFirmware
from terminal.zoo.chip_decline_reversal_not_journaled import (
    ChipDeclineReversalNotJournaledFirmware,
)
from terminal.zoo.chip_receipt_before_card import ChipReceiptBeforeCardFirmware
from terminal.zoo.completion_before_answer import CompletionBeforeAnswerFirmware
from terminal.zoo.completion_new_key_on_retry import CompletionNewKeyOnRetryFirmware
from terminal.zoo.decline_on_in_progress import DeclineOnInProgressFirmware
from terminal.zoo.float_amount import FloatAmountFirmware
from terminal.zoo.key_per_boot import KeyPerBootFirmware
from terminal.zoo.late_approval_flips import LateApprovalFlipsFirmware
from terminal.zoo.naive_retry import NaiveRetryFirmware
from terminal.zoo.no_amount_check import NoAmountCheckFirmware
from terminal.zoo.no_debounce import NoDebounceFirmware
from terminal.zoo.no_echo_check import NoEchoCheckFirmware
from terminal.zoo.no_reversal import NoReversalFirmware
from terminal.zoo.offline_batch_before_upload import OfflineBatchBeforeUploadFirmware
from terminal.zoo.offline_expiry_no_reversal import OfflineExpiryNoReversalFirmware
from terminal.zoo.offline_hold_as_sale import OfflineHoldAsSaleFirmware
from terminal.zoo.offline_late_decline_ignored import OfflineLateDeclineIgnoredFirmware
from terminal.zoo.offline_new_key_per_upload import OfflineNewKeyPerUploadFirmware
from terminal.zoo.offline_no_expiry import OfflineNoExpiryFirmware
from terminal.zoo.offline_no_floor_limit import OfflineNoFloorLimitFirmware
from terminal.zoo.offline_volatile_queue import OfflineVolatileQueueFirmware
from terminal.zoo.partial_as_decline import PartialAsDeclineFirmware
from terminal.zoo.partial_as_full import PartialAsFullFirmware
from terminal.zoo.print_before_journal import PrintBeforeJournalFirmware
from terminal.zoo.receipt_from_request import ReceiptFromRequestFirmware
from terminal.zoo.refund_and_void import RefundAndVoidFirmware
from terminal.zoo.refund_new_key_on_retry import RefundNewKeyOnRetryFirmware
from terminal.zoo.refund_not_resumed_at_boot import RefundNotResumedAtBootFirmware
from terminal.zoo.refund_receipt_before_answer import RefundReceiptBeforeAnswerFirmware
from terminal.zoo.refund_unknown_left import RefundUnknownLeftFirmware
from terminal.zoo.tid_counter_keys import TidCounterKeysFirmware
from terminal.zoo.tip_added_twice import TipAddedTwiceFirmware
from terminal.zoo.tip_after_batch_close import TipAfterBatchCloseFirmware
from terminal.zoo.trusts_unsigned import TrustsUnsignedFirmware
from terminal.zoo.void_after_batch_close import VoidAfterBatchCloseFirmware
from terminal.zoo.volatile_reversal import VolatileReversalFirmware
from terminal.zoo.wallet_cancel_once import WalletCancelOnceFirmware
from terminal.zoo.wallet_cancels_success import WalletCancelsSuccessFirmware
from terminal.zoo.wallet_new_order import WalletNewOrderFirmware
from terminal.zoo.wallet_no_cancel import WalletNoCancelFirmware
from terminal.zoo.wallet_pending_failed import WalletPendingFailedFirmware
from terminal.zoo.wallet_trusts_screen import WalletTrustsScreenFirmware

ZOO: dict[str, type] = {
    # 1. duplicate charge
    "naive-retry": NaiveRetryFirmware,
    "no-debounce": NoDebounceFirmware,
    "key-per-boot": KeyPerBootFirmware,
    # 2. "failed" but charged
    "no-reversal": NoReversalFirmware,
    "volatile-reversal": VolatileReversalFirmware,
    "decline-on-in-progress": DeclineOnInProgressFirmware,
    # 3. zero or wrong amount
    "float-amount": FloatAmountFirmware,
    "no-amount-check": NoAmountCheckFirmware,
    # 4. paid, no receipt
    "print-before-journal": PrintBeforeJournalFirmware,
    # 5. receipt without record
    "receipt-from-request": ReceiptFromRequestFirmware,
    "trusts-unsigned": TrustsUnsignedFirmware,
    "late-approval-flips": LateApprovalFlipsFirmware,
    # 5, against an attacker (faults splice, replay, device_swap)
    "no-echo-check": NoEchoCheckFirmware,
    "tid-counter-keys": TidCounterKeysFirmware,
    # beyond the five: reconciliation
    "batch-counts-reversed": BatchCountsReversedFirmware,
    # wallet (QR code) payments: 4. paid, no receipt / 2. "failed" but charged
    "wallet-pending-failed": WalletPendingFailedFirmware,
    "wallet-no-cancel": WalletNoCancelFirmware,
    "wallet-cancel-once": WalletCancelOnceFirmware,
    # 5. receipt without record (a paid order cancelled after its receipt)
    "wallet-cancels-success": WalletCancelsSuccessFirmware,
    # 1. duplicate charge (a new order number for the same customer)
    "wallet-new-order": WalletNewOrderFirmware,
    # 5. receipt without record (the customer's screen taken for the wallet's word)
    "wallet-trusts-screen": WalletTrustsScreenFirmware,
    # partial approval (RC 10): 3. wrong amount / 2. "failed" but charged
    "partial-as-full": PartialAsFullFirmware,
    "partial-as-decline": PartialAsDeclineFirmware,
    # chip decline after online approval: 2. "failed" but charged / 5. receipt without record
    "chip-decline-no-reversal": ChipDeclineNoReversalFirmware,
    "chip-receipt-before-card": ChipReceiptBeforeCardFirmware,
    # a chip decline's reversal sent but never journaled: lost to a power cut
    "chip-decline-reversal-not-journaled": ChipDeclineReversalNotJournaledFirmware,
    # voids and refunds at the terminal: a refund credited twice / a void not booked /
    # a sale both refunded and voided (over-credit)
    "refund-new-key-on-retry": RefundNewKeyOnRetryFirmware,
    "void-after-batch-close": VoidAfterBatchCloseFirmware,
    "refund-and-void": RefundAndVoidFirmware,
    # a refund whose answers were all lost, given up on without reversing it
    "refund-unknown-left": RefundUnknownLeftFirmware,
    # 5. receipt without record: a refund receipt printed before the host answered
    "refund-receipt-before-answer": RefundReceiptBeforeAnswerFirmware,
    # a refund cut off by a power cut, never sent again after the boot
    "refund-not-resumed-at-boot": RefundNotResumedAtBootFirmware,
    # offline approval (store-and-forward): 1. duplicate charge / 5. receipt without
    # record (lost queue, no expiry) / limits / reconciliation (batch race, late decline)
    "offline-new-key-per-upload": OfflineNewKeyPerUploadFirmware,
    "offline-volatile-queue": OfflineVolatileQueueFirmware,
    "offline-no-floor-limit": OfflineNoFloorLimitFirmware,
    "offline-no-expiry": OfflineNoExpiryFirmware,
    "offline-batch-before-upload": OfflineBatchBeforeUploadFirmware,
    "offline-late-decline-ignored": OfflineLateDeclineIgnoredFirmware,
    # an offline sale shown expired whose advice the host booked: charged, told unpaid
    "offline-expiry-no-reversal": OfflineExpiryNoReversalFirmware,
    "offline-hold-as-sale": OfflineHoldAsSaleFirmware,
    # pre-authorisation and completion: 2. "failed" but charged / paid without a record
    "completion-new-key-on-retry": CompletionNewKeyOnRetryFirmware,
    "completion-before-answer": CompletionBeforeAnswerFirmware,
    # tip adjust: 3. wrong amount (a tip counted twice, or shown but never charged)
    "tip-added-twice": TipAddedTwiceFirmware,
    "tip-after-batch-close": TipAfterBatchCloseFirmware,
}

__all__ = ["ZOO"]
