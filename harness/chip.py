"""The chip card in the reader: answers the firmware's `ChipComplete`.

A terminal configured with `chip` hands the host's approval of a card sale to the
card (EMV second GENERATE AC). The card in the reader is the one last presented; what
it answers is its `[[cards]] chip` property: "" accepts, "decline" declines (issuer
authentication failed), "removed" is pulled from the reader before the terminal is
done. A `chip_refusal` fault refuses the nth completion whatever the card says. The
answer (`ChipResult`) comes `CHIP_ANSWER_MS` later, unless the power fails first: a
card cut off mid-completion never answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faults.base import FaultState
from faults.devices import ChipRefusal
from terminal.firmware import CHIP_DECLINED, CHIP_REMOVED, ChipComplete, ChipResult

if TYPE_CHECKING:
    from harness.world import World

# A card answers the second GENERATE AC in a few hundred milliseconds.
CHIP_ANSWER_MS = 300
# Card property (scenarios.model.CHIP_BEHAVIOURS) -> ChipResult reason ("" = accepts).
_VERDICTS = {"": "", "decline": CHIP_DECLINED, "removed": CHIP_REMOVED}


class ChipReader:
    """The card reader's chip side, for one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.verdicts = {c.pan: _VERDICTS[c.chip] for c in world.sc.cards if c.chip}
        self.pan = ""  # the card in the reader: the last one presented
        self.faults: list[FaultState] = []  # chip_refusal faults
        self.completions = 0

    def complete(self, eff: ChipComplete) -> None:
        """The firmware asks the card to accept the host's approval of sale `key`."""
        w = self.world
        self.completions += 1
        reason = self.verdicts.get(self.pan, "")
        for s in self.faults:
            f = s.fault
            if isinstance(f, ChipRefusal) and s.hit(w.clock.now_ms):
                reason = _VERDICTS[f.reason]
                w._fault(s, {"completion": self.completions})
                break
        rec: dict[str, Any] = {"key": eff.key, "pan": self.pan, "result": reason or "ok"}
        if w.active is not None:
            rec["intent"] = w.active.intent
        w.emit("chip", rec)
        w.sched.after(
            CHIP_ANSWER_MS, self._answer, (ChipResult(eff.key, not reason, reason), w.epoch)
        )

    def _answer(self, arg: tuple[ChipResult, int]) -> None:
        event, epoch = arg
        if epoch != self.world.epoch:
            return  # the power failed while the card was completing: no answer
        self.world._input(event)
