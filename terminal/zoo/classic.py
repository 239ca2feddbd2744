"""The base of the zoo's card firmwares: the reference of an older generation.

The field firmwares the card zoo models (and the terminals of the recorded and
corpus incidents, whose logs show it) reverse a sale at once after its last
unanswered send: they have no status inquiry. Each card zoo firmware is this plus
its one flaw, so what catches it is the flaw, not the missing inquiry.
"""

from __future__ import annotations

from dataclasses import replace

from terminal.firmware import FirmwareConfig
from terminal.reference import ReferenceFirmware


class ClassicFirmware(ReferenceFirmware):
    """The reference, reversing an unknown outcome at once (no status inquiry)."""

    def __init__(self, config: FirmwareConfig) -> None:
        super().__init__(replace(config, status_inquiry=False))
