"""The base of the zoo's card firmwares: the reference of an older generation.

The field firmwares the card zoo models (and the terminals of the recorded and
corpus incidents, whose logs show it) reverse a sale at once after its last
unanswered send: they have no status inquiry, and they take cards only (wallet
scenarios are skipped for them, and the fuzzer draws no wallet customers). Each card
zoo firmware is this plus its one flaw, so what catches it is the flaw.
"""

from __future__ import annotations

from dataclasses import replace

from terminal.firmware import FirmwareConfig
from terminal.reference import ReferenceFirmware


class ClassicFirmware(ReferenceFirmware):
    """The reference, reversing an unknown outcome at once (no status inquiry), cards only."""

    features: frozenset[str] = frozenset()

    def __init__(self, config: FirmwareConfig) -> None:
        super().__init__(replace(config, status_inquiry=False))
