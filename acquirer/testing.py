"""Test helpers shipped with the mock acquirer: signed message builders for one terminal.

t = TerminalMessages("T1", "M1", b"key")
host.handle(t.purchase(stan=1, amount=500, pan=PAN, key="k1"), now_ms=0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from acquirer import protocol as p
from acquirer.protocol import sign


def fixed_test_mac_key(terminal_id: str) -> bytes:
    """A fixed MAC key for `terminal_id`, for tests only.

    Derived from the id, so anyone can compute it: never provision a deployment with
    it (`posharness acquirer serve` generates random keys in a key file instead)."""
    return f"posharness-test-mac-{terminal_id}".encode()


@dataclass(frozen=True, slots=True)
class TerminalMessages:
    """Builds requests as terminal `terminal_id` would send them, signed with `key`."""

    terminal_id: str
    merchant_id: str
    key: bytes

    def signed(self, msg: p.Message) -> p.Message:
        """`msg` (re)signed with this terminal's key."""
        return sign(replace(msg, mac=""), self.key)

    def purchase(self, stan: int, amount: int, pan: str, key: str = "", **kw: Any) -> p.Message:
        """A 0200 purchase; extra keyword arguments set other Message fields."""
        return self.signed(
            p.Message(
                p.MTI_PURCHASE,
                self.terminal_id,
                self.merchant_id,
                stan,
                pan=pan,
                amount=amount,
                idem_key=key,
                **kw,
            )
        )

    def refund(self, stan: int, amount: int, pan: str, key: str = "", **kw: Any) -> p.Message:
        """A 0200 refund (processing code 200000)."""
        return self.purchase(stan, amount, pan, key, processing_code=p.PROC_REFUND, **kw)

    def preauth(self, stan: int, amount: int, pan: str, key: str, **kw: Any) -> p.Message:
        """A 0100 pre-authorisation (a hold of `amount`)."""
        return self.signed(replace(self.purchase(stan, amount, pan, key, **kw), mti=p.MTI_PREAUTH))

    def completion(
        self, stan: int, amount: int, pan: str, key: str, orig_key: str, **kw: Any
    ) -> p.Message:
        """A 0220 completion capturing `amount` of the hold keyed `orig_key`."""
        return self._follow_up(stan, amount, pan, key, orig_key, p.PROC_PURCHASE, **kw)

    def adjust(
        self, stan: int, total: int, pan: str, key: str, orig_key: str, **kw: Any
    ) -> p.Message:
        """A 0220 tip adjust setting the total of the sale keyed `orig_key` to `total`."""
        return self._follow_up(stan, total, pan, key, orig_key, p.PROC_ADJUST, **kw)

    def _follow_up(
        self, stan: int, amount: int, pan: str, key: str, orig_key: str, proc: str, **kw: Any
    ) -> p.Message:
        return self.signed(
            p.Message(
                p.MTI_ADVICE,
                self.terminal_id,
                self.merchant_id,
                stan,
                pan=pan,
                processing_code=proc,
                amount=amount,
                idem_key=key,
                orig_key=orig_key,
                **kw,
            )
        )

    def reversal(
        self, stan: int, orig_key: str = "", orig_stan: int = 0, advice: bool = False, **kw: Any
    ) -> p.Message:
        """A 0400 reversal (0420 advice when `advice`) of the original key or STAN."""
        mti = p.MTI_REVERSAL_ADVICE if advice else p.MTI_REVERSAL
        return self.signed(
            p.Message(
                mti,
                self.terminal_id,
                self.merchant_id,
                stan,
                orig_key=orig_key,
                orig_stan=orig_stan,
                **kw,
            )
        )

    def batch(self, stan: int, batch_no: int, **kw: Any) -> p.Message:
        """A 0500 batch close; pass debit_count, debit_amount, ..., items."""
        return self.signed(
            p.Message(
                p.MTI_BATCH, self.terminal_id, self.merchant_id, stan, batch_no=batch_no, **kw
            )
        )

    def echo(self, stan: int) -> p.Message:
        """A 0800 network check."""
        return self.signed(p.Message(p.MTI_ECHO, self.terminal_id, self.merchant_id, stan))
