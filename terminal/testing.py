"""Test helpers for firmware authors: drive a firmware the way the harness does.

`Rig` keeps the durable journal, applies `JournalAppend` / `JournalTrim`, checks
that only effects come out, and simulates power cuts (a new instance booted from
the journal). `respond` builds a signed host answer to a request. No clock, no
network: the test decides when each response or timer arrives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from acquirer.protocol import Message, response_mti, sign
from terminal.firmware import (
    EFFECT_TYPES,
    AmountKeyed,
    Boot,
    CardPresented,
    CodeScanned,
    ConfirmPressed,
    Display,
    Effect,
    Event,
    Firmware,
    FirmwareConfig,
    FirmwareContractError,
    JournalAppend,
    JournalRecord,
    JournalTrim,
    MessageReceived,
    Print,
    Send,
)

FirmwareFactory = Callable[[FirmwareConfig], Firmware]


def respond(request: Message, key: bytes, rc: str = "00", **changes: Any) -> Message:
    """The signed host response to `request` (0200 -> 0210 ...), with `rc` and `changes`.

    Approvals get a default RRN and auth code derived from the STAN.
    """
    fields: dict[str, Any] = {"mti": response_mti(request.mti), "rc": rc, "repeat": False}
    if rc == "00" and request.mti == "0200":
        fields["rrn"] = f"RRN{request.stan:09d}"
        fields["auth_code"] = f"A{request.stan % 100_000:05d}"
    fields.update(changes)
    return sign(replace(request, mac="", **fields), key)


class Rig:
    """One firmware instance plus its durable journal, driven event by event."""

    def __init__(
        self,
        factory: FirmwareFactory,
        config: FirmwareConfig | None = None,
        journal: Iterable[JournalRecord] = (),
        boot_nonces: bool = True,
        device: str = "",
    ) -> None:
        self.factory = factory
        self.config = config or FirmwareConfig()
        self.journal: list[JournalRecord] = list(journal)
        self.log: list[Effect] = []  # every effect since the rig was made
        # Boot nonces from a private seeded RNG: deterministic, distinct per boot.
        # boot_nonces=False boots with Boot.nonce "" (keys are then the bare counter);
        # `device` names a second physical device with the same terminal id.
        seed = f"rig:{self.config.terminal_id}:{device}"
        self._nonces = random.Random(seed) if boot_nonces else None
        self.boot_effects = self.power_cut()

    def power_cut(self) -> list[Effect]:
        """Throw the instance away and boot a new one from the journal."""
        self.firmware = self.factory(self.config)
        nonce = f"{self._nonces.getrandbits(32):08x}" if self._nonces else ""
        return self.feed(Boot(tuple(self.journal), nonce))

    def feed(self, event: Event) -> list[Effect]:
        effects = list(self.firmware.handle(event))
        for effect in effects:
            if not isinstance(effect, EFFECT_TYPES):
                raise FirmwareContractError(f"not an effect: {effect!r}")
            if isinstance(effect, JournalAppend):
                self.journal.append(effect.record)
            elif isinstance(effect, JournalTrim):
                del self.journal[: effect.count]
        self.log += effects
        return effects

    def purchase(self, amount: int, pan: str = "4000000000000002") -> list[Effect]:
        """Key `amount`, confirm, tap: the effects of all three."""
        effects = self.feed(AmountKeyed(amount))
        effects += self.feed(ConfirmPressed())
        effects += self.feed(CardPresented(pan))
        return effects

    def scan(self, amount: int, code: str = "280000000000000001") -> list[Effect]:
        """Key `amount`, confirm, scan the wallet code: the effects of all three."""
        effects = self.feed(AmountKeyed(amount))
        effects += self.feed(ConfirmPressed())
        effects += self.feed(CodeScanned(code))
        return effects

    def reply(self, request: Message, rc: str = "00", **changes: Any) -> list[Effect]:
        """Deliver the signed host response to `request`."""
        return self.feed(MessageReceived(respond(request, self.config.mac_key, rc, **changes)))


def sends(effects: Iterable[Effect]) -> list[Message]:
    return [e.message for e in effects if isinstance(e, Send)]


def displays(effects: Iterable[Effect]) -> list[Display]:
    return [e for e in effects if isinstance(e, Display)]


def prints(effects: Iterable[Effect]) -> list[Print]:
    return [e for e in effects if isinstance(e, Print)]


def journaled(effects: Iterable[Effect]) -> list[JournalRecord]:
    return [e.record for e in effects if isinstance(e, JournalAppend)]
