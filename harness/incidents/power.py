"""Infer stage (power): cuts, watchdog reboots and orderly shutdowns of the terminal.

A terminal cannot log its own power loss: many logs show a boot with no power-off
line before it. Such a boot is read as a power cut right after the last line logged
before it. A power-off line with reason `shutdown` (or `orderly`, `user`) is an
orderly shutdown, kept distinct from a cut.
"""

import faults

from .infer import _power_fault
from .parse import Entry, Log

# A power-off line with one of these reasons was asked for, not suffered.
ORDERLY_REASONS = ("shutdown", "orderly", "user", "poweroff")
# The lines that show the terminal running (anything but the power and boot lines).
_ACTIVITY_SKIP = ("log_start", "power", "boot")


def power_faults(
    tlog: Log,
    origin: int,
    plan: list[tuple[int, faults.Fault]],
    notes: list[str],
    unexplained: list[str],
) -> list[tuple[int, int]]:
    """Add power faults to `plan`; return the windows the terminal was off (a
    message arriving then is lost, not dropped)."""
    windows: list[tuple[int, int]] = []
    off: Entry | None = None
    last_activity: Entry | None = None
    for e in tlog.entries:
        t = e.ts_ms - origin
        if e.event == "power" and e.data["state"] == "off":
            off = e
            continue
        if e.event in ("power", "boot"):
            if off is not None:
                _logged_off(tlog, off, origin, t, plan, notes, windows)
            elif last_activity is not None and last_activity.event == "crash":
                notes.append(
                    f"{tlog.path}:{e.line}: boot after a firmware crash: a watchdog reboot, "
                    "not a fault [likely]"
                )
            elif last_activity is not None:
                # A boot after activity with no power-off line: the power was lost.
                t_off = last_activity.ts_ms - origin
                plan.append(
                    (t_off, _power_fault(tlog, last_activity, t_off + 1, t - t_off, notes, True))
                )
                windows.append((t_off, t))
            off, last_activity = None, None
            continue
        if e.event not in _ACTIVITY_SKIP:
            last_activity = e
    if off is not None:
        unexplained.append(f"{tlog.path}:{off.line}: power went off and never came back")
        windows.append((off.ts_ms - origin, 1 << 62))
    return windows


def _logged_off(
    tlog: Log,
    off: Entry,
    origin: int,
    t_on: int,
    plan: list[tuple[int, faults.Fault]],
    notes: list[str],
    windows: list[tuple[int, int]],
) -> None:
    t_off = off.ts_ms - origin
    windows.append((t_off, t_on))
    reason = str(off.data.get("reason", "cut"))
    where = f"{tlog.path}:{off.line}"
    if reason == "watchdog":
        notes.append(
            f"{where}: the firmware crashed and the watchdog rebooted it: not a fault, the "
            "firmware reproduces it [sure]"
        )
        return
    if reason in ORDERLY_REASONS:
        f = faults.build_fault("power_cut", {"at_ms": t_off, "off_ms": t_on - t_off})
        plan.append((t_off, f))
        notes.append(
            f"{where}: orderly shutdown ({reason}), not a power loss: the terminal is off "
            f"for {t_on - t_off} ms -> {f.describe()} [sure]"
        )
        return
    if t_on == t_off:
        return
    plan.append((t_off, _power_fault(tlog, off, t_off, t_on - t_off, notes)))
