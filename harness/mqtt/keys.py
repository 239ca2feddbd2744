"""Terminal secrets outside the simulation: a key file, generated at provisioning.

A key file is JSON, mode 0600, mapping each terminal id to its secrets::

    {"T0001": {"mac_key": "<64 hex digits>", "broker_password": "<token>"}}

`mac_key` is the terminal's MAC key (hex, 16 to 64 bytes); `broker_password` is
its broker login (user = terminal id) on the private broker `acquirer serve`
starts, and may be absent. A hand-written file may give just the hex key:
``{"T0001": "<hex>"}``. Keys are drawn with `secrets` (the OS's CSPRNG) when the
file is generated; nothing outside the simulation derives a key from a terminal
id (the simulation's `harness.world.mac_key_for` does, and only there).

The file is refused, one line naming it, when it is not a regular file, larger
than KEY_FILE_MAX_BYTES, readable or writable by other users (mode & 0o077), or
malformed. Child processes get its path (or the environment), never a key on
their command line (`/proc/PID/cmdline` is readable by every local user).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from scenarios.files import FileRefused, open_regular

# A key file of 100,000 terminals is about 13 MB; refuse anything far larger unread.
KEY_FILE_MAX_BYTES = 32 * 1024 * 1024
MAC_KEY_BYTES = 32
MAC_KEY_MIN_BYTES, MAC_KEY_MAX_BYTES = 16, 64
BROKER_PASSWORD_MAX_CHARS = 128
# Where `posharness fleet` and users may put a key file's path for child processes.
KEYS_ENV = "POSHARNESS_KEYS"


class KeyFileError(ValueError):
    """A key file cannot be used. The message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class TerminalSecret:
    """One terminal's secrets: its MAC key and (optionally) its broker password."""

    mac_key: bytes
    broker_password: str = ""

    def __repr__(self) -> str:  # never print a key by accident (tracebacks, logs)
        return "TerminalSecret(<hidden>)"


def generate(tids: Iterable[str]) -> dict[str, TerminalSecret]:
    """Fresh random secrets for each terminal id."""
    return {
        t: TerminalSecret(secrets.token_bytes(MAC_KEY_BYTES), secrets.token_urlsafe(18))
        for t in tids
    }


def write_key_file(path: str | Path, keys: Mapping[str, TerminalSecret]) -> None:
    """Write `keys` to `path` with mode 0600 (atomically: a temporary file, then rename)."""
    path = Path(path)
    obj = {
        t: {"mac_key": s.mac_key.hex(), "broker_password": s.broker_password}
        if s.broker_password
        else {"mac_key": s.mac_key.hex()}
        for t, s in sorted(keys.items())
    }
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tid_ok(tid: str) -> bool:
    return 1 <= len(tid) <= 8 and tid.isascii() and tid.isalnum()


def _hex_key(path: Path, tid: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: {tid}: mac_key must be a hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{path}: {tid}: mac_key is not hex") from None
    if not MAC_KEY_MIN_BYTES <= len(key) <= MAC_KEY_MAX_BYTES:
        raise KeyFileError(
            f"{path}: {tid}: mac_key must be {MAC_KEY_MIN_BYTES}-{MAC_KEY_MAX_BYTES} bytes "
            f"({2 * MAC_KEY_MIN_BYTES}-{2 * MAC_KEY_MAX_BYTES} hex digits), got {len(key)}"
        )
    return key


def _entry(path: Path, tid: str, value: object) -> TerminalSecret:
    if not _tid_ok(tid):
        raise KeyFileError(f"{path}: {tid[:20]!r} is not a terminal id (1-8 letters or digits)")
    if isinstance(value, str):
        return TerminalSecret(_hex_key(path, tid, value))
    if not isinstance(value, dict):
        raise KeyFileError(f"{path}: {tid}: expected a hex key or {{mac_key, broker_password}}")
    unknown = sorted(set(value) - {"mac_key", "broker_password"})
    if unknown:
        raise KeyFileError(f"{path}: {tid}: unknown field {unknown[0]!r}")
    password = value.get("broker_password", "")
    if (
        not isinstance(password, str)
        or len(password) > BROKER_PASSWORD_MAX_CHARS
        or not password.isprintable()
        or ":" in password
    ):
        raise KeyFileError(
            f"{path}: {tid}: broker_password must be printable text without ':', "
            f"at most {BROKER_PASSWORD_MAX_CHARS} characters"
        )
    return TerminalSecret(_hex_key(path, tid, value.get("mac_key")), password)


def read_secret_json(path: str | Path, what: str) -> dict[str, object]:
    """The JSON object in secrets file `path` (regular, mode 0600 or stricter, at most
    KEY_FILE_MAX_BYTES); KeyFileError (one line naming the file) otherwise. `what`
    says what the object maps, for the error."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & 0o077:
                raise KeyFileError(
                    f"{path}: other users may read or change it "
                    f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
                )
            data = f.read(KEY_FILE_MAX_BYTES + 1)
    except FileRefused as exc:
        raise KeyFileError(str(exc)) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > KEY_FILE_MAX_BYTES:
        raise KeyFileError(f"{path}: larger than {KEY_FILE_MAX_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise KeyFileError(f"{path}: not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise KeyFileError(f"{path}: expected a JSON object of {what}")
    return obj


def load_key_file(path: str | Path) -> dict[str, TerminalSecret]:
    """The secrets in key file `path`; KeyFileError (one line) if it cannot be used."""
    obj = read_secret_json(path, "terminal id -> key")
    return {tid: _entry(Path(path), tid, value) for tid, value in obj.items()}


def mac_keys(keys: Mapping[str, TerminalSecret]) -> dict[str, bytes]:
    """Terminal id -> MAC key."""
    return {t: s.mac_key for t, s in keys.items()}


def secret_for(path: str | Path, keys: Mapping[str, TerminalSecret], tid: str) -> TerminalSecret:
    """Terminal `tid`'s secrets, or KeyFileError naming the file."""
    try:
        return keys[tid]
    except KeyError:
        raise KeyFileError(f"{path}: no key for terminal {tid}") from None
