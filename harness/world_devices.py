"""The simulated world's devices: the receipt printer (one job at a time, its faults:
jam, paper out, failure) and the power (cut at a time or right after a send, receive
or print; the firmware made anew at power-on and booted from its journal, and the
cashier's sale restarted). Moved unchanged out of harness/world.py; `World` derives
from `DevicesMixin` as it does from the people's and the wire's parts."""

from __future__ import annotations

from typing import Any

from faults.base import FaultState
from faults.devices import PaperOut, PrinterJam, PrintFailure
from terminal.firmware import (
    Boot,
    FirmwareProtocolError,
    Print,
    PrintFinished,
    PrintStatus,
    firmware_features,
)

from .world_state import WorldState


class DevicesMixin(WorldState):
    """The printer and the power of a `World` (harness/world.py)."""

    # ------------------------------------------------------------------ printer

    def _print(self, eff: Print) -> None:
        self.print_jobs += 1
        now = self.clock.now_ms
        status = PrintStatus.OK
        for s in self.f_printer:
            if s.hit(now):
                f = s.fault
                status = (
                    PrintStatus.JAMMED
                    if isinstance(f, PrinterJam)
                    else PrintStatus.NO_PAPER
                    if isinstance(f, PaperOut)
                    else PrintStatus.FAILED
                    if isinstance(f, PrintFailure)
                    else status
                )
                self._fault(s, {"job": eff.job_id})
        start = max(now, self.printer_free_ms)
        done = start + self.sc.people.print_ms
        self.printer_free_ms = done
        self.emit("print_start", {"job": eff.job_id})
        self.sched.at(done, self._print_done, (eff, status, self.epoch))
        self._power_after("print", "")

    def _print_done(self, arg: tuple[Print, PrintStatus, int]) -> None:
        eff, status, epoch = arg
        if epoch != self.epoch:
            return
        rec: dict[str, Any] = {"job": eff.job_id, "status": status.value}
        rec["receipt"] = eff.receipt.to_dict()
        if self.active is not None:
            rec["intent"] = self.active.intent
        self.emit("print", rec)
        self._input(PrintFinished(eff.job_id, status))

    # ------------------------------------------------------------------ power

    def _power_cut_at(self, s: FaultState) -> None:
        if s.hit(self.clock.now_ms):
            self._fault(s, {})
            self._power_off("cut")
            self.sched.after(s.fault.off_ms, self._power_on, None)  # type: ignore[attr-defined]

    def _power_after(self, point: str, mti: str) -> None:
        for s in self.f_power_after:
            f = s.fault
            if f.after == point and (not f.mti or f.mti == mti) and s.hit(self.clock.now_ms):  # type: ignore[attr-defined]
                self._fault(s, {"after": point})
                self._power_off("cut")
                self.sched.after(f.off_ms, self._power_on, None)  # type: ignore[attr-defined]
                return

    def _power_off(self, reason: str) -> None:
        if not self.powered:
            return
        self.powered = False
        close = getattr(self.fw, "close", None)
        if close is not None:
            close()  # an exec: firmware's process dies with the power
        self.fw = None
        self.epoch += 1
        self.timers.clear()
        self.printer_free_ms = self.clock.now_ms
        self.emit("power", {"state": "off", "reason": reason})

    def _power_on(self, _: None) -> None:
        if self.powered:
            return
        self.powered = True
        self.emit("power", {"state": "on"})
        try:
            self.fw = self.factory(self.fw_config)
            self.features = firmware_features(self.fw)
            self.fw_seen = True
        except FirmwareProtocolError:
            raise
        except Exception as exc:
            self.fw = None
            self.crashes += 1
            self.emit("crash", {"error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        cut_ms = self.clock.now_ms
        nonce = f"{self.rng_boot.getrandbits(32):08x}"
        self._input(Boot(tuple(self.journal), nonce, self.clock.now_ms))
        a = self.active
        if a is not None and not a.final and self.sc.people.restart_after_power and self.powered:
            self.sched.after(
                self.sc.people.retry_after_ms, self._restart, (a.intent, a.attempts, cut_ms)
            )
        elif a is None or a.final:
            self._next_waiting()

    def _restart(self, arg: tuple[int, int, int]) -> None:
        n, attempts, _ = arg
        st = self.intents.get(n)
        if st is None or st.final or st.attempts != attempts or self.active is not st:
            return
        if not self.powered:
            return
        self.emit("cashier", {"intent": n, "action": "restart-after-power"})
        self._attempt(st)
