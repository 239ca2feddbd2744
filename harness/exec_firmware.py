"""`--firmware 'exec:COMMAND ARGS...'`: a firmware in any language, as a child process
that speaks the pipe protocol of harness/exec_wire.py (docs/firmware-protocol.md).

One process per power-on: the harness starts it, says hello, then writes one line per
event and reads one line of effects back (one write and one read per event, nothing
else). A power cut or a watchdog reboot kills it (SIGKILL) and the next power-on
starts a fresh one, which learns its past only from `Boot.journal`. A process that
exits or dies is a firmware crash, handled as an exception in a Python firmware is;
its stderr's last lines go into the trace's crash record. Breaking the protocol (a
bad line, an unknown effect, a missing field, no answer within the wall-clock limit)
is a `FirmwareProtocolError`: the run stops with one sentence naming the event number
and the field, never a verdict.
"""

from __future__ import annotations

import atexit
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from typing import IO

from terminal.firmware import (
    FEATURE_OFFLINE,
    Boot,
    Effect,
    Event,
    FirmwareConfig,
    FirmwareProtocolError,
    TimerExpired,
)

from .exec_wire import (
    LINE_BYTES_MAX,
    WireError,
    check_hello,
    decode_effects,
    encode_event,
    hello,
    hello_features,
)

PREFIX = "exec:"
# Wall-clock seconds a firmware has to answer one event (or the hello) before it is
# reported unresponsive. POSHARNESS_EXEC_TIMEOUT_S overrides it.
TIMEOUT_S_DEFAULT = 10.0
STDERR_TAIL_BYTES = 2_000
SPIN_S = 0.0002

_live: weakref.WeakSet[ExecProcess] = weakref.WeakSet()


def is_exec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_exec(spec: str) -> list[str]:
    """`exec:COMMAND ARGS...` -> argv (shell-like quoting, no shell)."""
    try:
        argv = shlex.split(spec[len(PREFIX) :])
    except ValueError as exc:
        raise ValueError(f"firmware {spec!r}: {exc}") from None
    if not argv:
        raise ValueError(f"firmware {spec!r}: no command after exec:")
    return argv


def _timeout_s() -> float:
    raw = os.environ.get("POSHARNESS_EXEC_TIMEOUT_S", "")
    try:
        value = float(raw) if raw else TIMEOUT_S_DEFAULT
    except ValueError:
        return TIMEOUT_S_DEFAULT
    return value if value > 0 else TIMEOUT_S_DEFAULT


def _spin_select(fd: int) -> list[int]:
    """Poll `fd` without sleeping for up to SPIN_S: a firmware answers in
    microseconds, and a sleeping waiter costs a wake-up (tens of microseconds on a
    virtual machine) per event. Only how long we wait depends on the clock."""
    deadline = time.perf_counter() + SPIN_S
    while True:
        ready, _, _ = select.select([fd], [], [], 0)
        if ready or time.perf_counter() > deadline:
            return ready


class FirmwareExited(Exception):
    """The firmware process exited or was killed by a signal: a crash."""


class ExecProcess:
    """One running firmware process and the bytes moving to and from it."""

    def __init__(self, argv: list[str], timeout_s: float) -> None:
        self.argv = argv
        self.timeout_s = timeout_s
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by kill)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                bufsize=0,
                start_new_session=True,  # a Ctrl-C to posharness does not reach it first
            )
        except OSError as exc:
            self.stderr.close()
            raise FirmwareProtocolError(f"cannot start {shlex.join(argv)}: {exc}") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        self.buf = b""
        _live.add(self)

    def exchange(self, line: bytes, what: str) -> bytes:
        """Write `line`, return the answer line (without its newline)."""
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self.fd_in, view) :]
        except (BrokenPipeError, ConnectionResetError):
            raise FirmwareExited(self._exit_text(what)) from None
        return self._readline(what)

    def _readline(self, what: str) -> bytes:
        buf = self.buf
        end = buf.find(b"\n")
        while end < 0:
            if len(buf) > LINE_BYTES_MAX:
                self.kill()
                raise FirmwareProtocolError(
                    f"{what}: an answer line over {LINE_BYTES_MAX} bytes (huge output)"
                )
            ready = _spin_select(self.fd_out)
            if not ready:
                ready, _, _ = select.select([self.fd_out], [], [], self.timeout_s)
            if not ready:
                self.kill()
                raise FirmwareProtocolError(
                    f"{what}: unresponsive, no answer within {self.timeout_s:g} s "
                    "(POSHARNESS_EXEC_TIMEOUT_S sets the limit)"
                )
            chunk = os.read(self.fd_out, 65_536)
            if not chunk:
                raise FirmwareExited(self._exit_text(what))
            start = len(buf)
            buf += chunk
            end = buf.find(b"\n", start)
        self.buf = buf[end + 1 :]
        return buf[:end]

    def _exit_text(self, what: str) -> str:
        try:
            code = self.proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        tail = self.stderr_tail()
        return f"firmware process ended ({how}) at {what}" + (f"; stderr: {tail}" if tail else "")

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - STDERR_TAIL_BYTES))
            text = self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " | ".join(line for line in text.splitlines() if line.strip())[-500:]

    def kill(self) -> None:
        """SIGKILL, as a power cut: nothing the firmware did not write is kept."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        _live.discard(self)


class ExecFirmware:
    """The Firmware protocol over one `ExecProcess`."""

    def __init__(self, argv: list[str], config: FirmwareConfig, timeout_s: float) -> None:
        self.config = config
        self.key = config.mac_key
        self.n = 0
        self._no_clock = True  # until the hello declares `offline`
        self.process = ExecProcess(argv, timeout_s)
        weakref.finalize(self, ExecProcess.kill, self.process)  # dropped: ended
        try:
            answer = self.process.exchange(hello(config), "hello")
        except FirmwareExited as exc:
            raise FirmwareProtocolError(str(exc)) from None
        try:
            said = _json(answer)
            self.name, self.version = check_hello(said)
            self.features = hello_features(said)
            self._no_clock = FEATURE_OFFLINE not in self.features
        except WireError as exc:
            self.process.kill()
            raise FirmwareProtocolError(f"hello: {exc}") from None

    def close(self) -> None:
        """The power went off: SIGKILL the process (the world calls this)."""
        self.process.kill()

    def handle(self, event: Event) -> Sequence[Effect]:
        self.n += 1
        n = self.n
        what = f"event {n} ({type(event).__name__})"
        if self._no_clock and isinstance(event, (Boot, TimerExpired)):
            # The clock goes only to a firmware that approves offline (it needs it);
            # every other one sees the events exactly as before it existed.
            event = replace(event, clock_ms=0)
        answer = self.process.exchange(encode_event(n, event, self.key), what)
        try:
            return decode_effects(answer, n, self.config)
        except WireError as exc:
            self.process.kill()
            raise FirmwareProtocolError(f"{what}: {exc}") from None


def _json(line: bytes) -> object:
    import json

    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError(f"not a JSON line: {line[:80]!r}") from None


class ExecFactory:
    """What `load_firmware('exec:...')` returns: each call (a power-on, or one more
    terminal of a fleet) starts a process of its own; `close` ends them all."""

    def __init__(self, spec: str, timeout_s: float | None = None) -> None:
        self.spec = spec
        self.argv = parse_exec(spec)
        self.timeout_s = timeout_s or _timeout_s()
        self.started: weakref.WeakSet[ExecFirmware] = weakref.WeakSet()

    def __call__(self, config: FirmwareConfig) -> ExecFirmware:
        fw = ExecFirmware(self.argv, config, self.timeout_s)
        self.started.add(fw)
        return fw

    def close(self) -> None:
        for fw in list(self.started):
            fw.close()


@atexit.register
def _kill_live() -> None:
    for p in list(_live):
        p.kill()
