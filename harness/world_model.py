"""The simulated world's constants and small types (moved out of harness/world.py,
which re-exports every name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    Boot,
    CancelPressed,
    CardPresented,
    ChipResult,
    CodeScanned,
    CompletionRequested,
    ConfirmPressed,
    Firmware,
    FirmwareConfig,
    MessageReceived,
    PreauthKeyed,
    PrintFinished,
    RefundRequested,
    ReprintRequested,
    TimerExpired,
    TipAdjustRequested,
    VoidRequested,
)

if TYPE_CHECKING:
    from acquirer.host import Acquirer
    from harness.engine import Scheduler

FirmwareFactory = Callable[[FirmwareConfig], Firmware]

# The customer taps again at most this many times after misreads, per attempt.
RETAPS_MAX = 5
# A watchdog reboots a crashed firmware after this long.
WATCHDOG_REBOOT_MS = 2_000
# After this many crashes in one run the watchdog stops rebooting: a firmware that
# crashes in a loop would otherwise run until the event limit.
CRASHES_MAX = 20
# How many keys, STANs and RRNs the world remembers for attribution, and how many
# finished intents it keeps: bounds memory on long runs.
ATTRIBUTION_WINDOW = 50_000
INTENTS_KEPT = 1_000
# A scenario with more steps than this writes them as `step` trace records, not
# inline in the first line (which would be tens of megabytes for a load run).
STEPS_INLINE_MAX = 10_000
# A phone showing an old "payment successful" screen: the cashier sees it this long
# after the scan.
STALE_SCREEN_AFTER_MS = 2_000
# Default slack after the last step before a run is cut off (besides each customer's
# own time, `World._queue_ms`).
RUN_TAIL_MS = 3_600_000

_INPUT_NAMES = {
    AmountKeyed: "amount_keyed",
    ConfirmPressed: "confirm",
    CardPresented: "card",
    CodeScanned: "scan",
    TimerExpired: "timer",
    PrintFinished: "print_finished",
    ReprintRequested: "reprint",
    BatchCloseRequested: "batch_close",
    ChipResult: "chip_result",
    Boot: "boot",
    CancelPressed: "cancel",
    MessageReceived: "message",
    VoidRequested: "void",
    RefundRequested: "refund",
    PreauthKeyed: "preauth_keyed",
    CompletionRequested: "complete",
    TipAdjustRequested: "tip",
}


@dataclass(slots=True)
class IntentState:
    """What the harness knows about one purchase intent while the run goes on."""

    intent: int
    card: str
    amount: int
    attempts: int = 0
    final: str = ""
    final_ms: int = -1
    started_ms: int = 0
    wallet: bool = False  # paid by scanning a wallet code (`card` is the code)
    preauth: bool = False  # a pre-authorisation (a hold), keyed with PreauthKeyed
    walked_in: bool = False  # came from another terminal after a FAILED sale


def mac_key_for(terminal_id: str) -> bytes:
    """The MAC key the simulated host and terminal share (per terminal)."""
    return f"posharness-mac-{terminal_id}".encode()


@dataclass(slots=True)
class HostSite:
    """The host's state outside its own store, shared by every terminal of a world:
    down after a crash until `down_until`; `epoch` bumps on each crash (work begun
    before it is abandoned); the next wallet tick."""

    down_until: int = -1
    epoch: int = 0
    # When the host is next woken for its wallet orders (-1: not scheduled).
    wallet_tick_ms: int = -1


@dataclass(slots=True)
class Lane:
    """One terminal's place in a world of several (harness/lanes.py): its name (the
    `term` of its trace records) and what it shares with the others."""

    name: str
    host: Acquirer
    sched: Scheduler
    site: HostSite
    # The plan index of each of this terminal's faults, in order.
    fault_numbers: list[int] = field(default_factory=list)
