"""A private broker on a free loopback port: mosquitto with a generated config.

`PrivateBroker` writes a config into a temporary directory: one listener on
127.0.0.1, no anonymous access, a password file (mosquitto_passwd) and an ACL
file that confines each terminal's user to its own topic tree:

* user ``acquirer``: reads ``posh/+/req``, writes ``posh/+/resp``;
* user ``proxy``: reads and writes ``posh/#`` (it moves up -> req, resp -> down);
* user ``fleet``: reads and writes ``posh/#`` (one connection drives many terminals);
* users ``fleet-1`` .. ``fleet-P`` (`fleet --procs P` workers): as ``fleet``;
* any other user (a terminal, named by its terminal id): ``posh/<its id>/#`` only.

Hardening (docs/security.md): each login's client id is its user name
(``use_username_as_clientid``), so no login can take over another's session
(a terminal cannot connect as ``posharness-acquirer`` and knock the host off);
payloads over FRAME_MAX_BYTES are not forwarded and packets much larger close
the connection; every client's queue is capped in messages and in bytes.

When mosquitto is not installed the embedded pure-Python broker (amqtt, the
optional `mqtt-embedded` extra) is used instead, without authentication or
ACLs; a one-line note says so.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .wire import FRAME_MAX_BYTES, BrokerAddress

SERVICE_USERS = ("acquirer", "proxy", "fleet")
# Largest MQTT packet a client may send: a frame plus topic, header and the CONNECT's
# will (bytes). Larger closes the connection; payloads over FRAME_MAX_BYTES are dropped.
MAX_PACKET_BYTES = FRAME_MAX_BYTES + 1024
# Per-client queue caps (QoS 1 messages beyond those in flight): the host's queue
# must hold a fleet's burst while it restarts (messages), and no client's may grow
# the broker without bound (bytes; 64 MiB is ~200,000 fleet frames).
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Seconds to wait for the broker to accept connections.
START_TIMEOUT_S = 10.0
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
SETUP_HINT = "mosquitto not installed: scripts/setup-mqtt installs it (apt-get install mosquitto)"


class BrokerError(RuntimeError):
    """No broker could be started (ours to report: the message says what to install)."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_CANDIDATES:
        if Path(path).exists():
            return path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _acl(terminal_users: Sequence[str], extra_service_users: Sequence[str] = ()) -> str:
    extra = [
        line for u in extra_service_users for line in (f"user {u}", "topic readwrite posh/#", "")
    ]
    lines = [
        *extra,
        "user acquirer",
        "topic read posh/+/req",
        "topic write posh/+/resp",
        "",
        "user proxy",
        "topic readwrite posh/#",
        "",
        "user fleet",
        "topic readwrite posh/#",
        "",
        "# Every other user is a terminal named by its id: its own tree only.",
        "pattern readwrite posh/%u/#",
        "",
    ]
    del terminal_users  # the pattern covers every terminal
    return "\n".join(lines)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until something accepts on 127.0.0.1:`port` (or the broker died)."""
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with status {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                done.wait(0.02)
        raise BrokerError(f"mosquitto did not listen on port {port} within {timeout_s} s")
    finally:
        deadline.cancel()


def _hand_to_broker_user(directory: Path) -> None:
    """Started as root, mosquitto drops to the `mosquitto` user: let it read its files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in (directory, *directory.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)


class PrivateBroker:
    """A mosquitto process owned by us. `with PrivateBroker() as b:` or start()/stop()."""

    def __init__(
        self,
        *,
        port: int | None = None,
        terminal_users: Sequence[str] = (),
        auth: bool = True,
        binary: str | None = None,
        passwords: Mapping[str, str] | None = None,
        extra_service_users: Sequence[str] = (),
    ) -> None:
        """`passwords`: terminal user -> password to use (others get random ones);
        `extra_service_users`: more users with the fleet's rights (fleet workers)."""
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise BrokerError(SETUP_HINT)
        self.port = port or free_port()
        self.auth = auth and shutil.which("mosquitto_passwd") is not None
        self.terminal_users = tuple(terminal_users)
        self.extra_service_users = tuple(extra_service_users)
        self._given_passwords = dict(passwords or {})
        self.passwords: dict[str, str] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="posharness-mqtt-")
        self.dir = Path(self._dir.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        conf = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            # Without it mosquitto's replies wait out Nagle + delayed ACK (~40 ms each).
            "set_tcp_nodelay true",
            # Unbounded in-flight and a deep queue per client (QoS 1 at fleet rates),
            # capped in bytes too.
            "max_inflight_messages 0",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            f"message_size_limit {FRAME_MAX_BYTES}",
            f"max_packet_size {MAX_PACKET_BYTES}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.auth:
            pw = self.dir / "passwd"
            users = [*SERVICE_USERS, *self.extra_service_users, *self.terminal_users]
            for user in users:
                self.passwords[user] = self._given_passwords.get(user) or secrets.token_hex(12)
            # Plain "user:password" lines, hashed in place by one mosquitto_passwd call
            # (one call per user took ~1 s for 100 terminals). Written 0600: the
            # directory is private too (TemporaryDirectory makes it 0700).
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.writelines(f"{u}:{self.passwords[u]}\n" for u in users)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            acl = self.dir / "acl"
            acl.write_text(_acl(self.terminal_users, self.extra_service_users))
            conf += [
                "allow_anonymous false",
                f"password_file {pw}",
                f"acl_file {acl}",
                # A login's client id is its user name: no login can take over another
                # client's session (e.g. a terminal connecting as the host's client id).
                "use_username_as_clientid true",
            ]
        else:
            conf += ["allow_anonymous true"]
        (self.dir / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        _hand_to_broker_user(self.dir)

    def address(self, user: str | None = None) -> BrokerAddress:
        """Where to connect, logged in as `user` (a service user or a terminal id)."""
        if not self.auth or user is None:
            return BrokerAddress("127.0.0.1", self.port)
        if user not in self.passwords:
            raise KeyError(f"broker has no user {user!r} (add it to terminal_users)")
        return BrokerAddress("127.0.0.1", self.port, user, self.passwords[user])

    def start(self) -> PrivateBroker:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(self.port, self.proc, START_TIMEOUT_S)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
            self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port (clients must reconnect)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmbeddedBroker:
    """amqtt in a background thread: zero set-up, no auth or ACLs, slower than mosquitto."""

    NOTE = (
        "note: mosquitto not found, using the embedded Python broker (amqtt): no "
        "authentication or ACLs, lower throughput; scripts/setup-mqtt installs mosquitto"
    )

    def __init__(self, port: int | None = None) -> None:
        try:
            import amqtt.broker  # noqa: F401
        except ImportError:
            raise BrokerError(
                f"{SETUP_HINT}; or pip install 'posharness[mqtt-embedded]' for the embedded broker"
            ) from None
        self.port = port or free_port()
        self.auth = False
        self.passwords: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: object = None
        self._error: BaseException | None = None

    def address(self, user: str | None = None) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    def start(self) -> EmbeddedBroker:
        import asyncio

        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def serve() -> None:
            with warnings.catch_warnings():
                # amqtt 0.12 warns that entry-point plugin loading is deprecated; it
                # is amqtt's own default, and a warning must not kill the thread.
                warnings.simplefilter("ignore", DeprecationWarning)
                broker = Broker(config)
            await broker.start()
            self._ready.set()
            await stop.wait()
            await broker.shutdown()

        def run() -> None:
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # reported by start(), not lost in a thread
                self._error = exc
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="amqtt", daemon=True)
        self._thread.start()
        self._stop = (loop, stop)
        if not self._ready.wait(START_TIMEOUT_S):
            raise BrokerError("embedded broker did not start")
        if self._error is not None:
            raise BrokerError(f"embedded broker failed to start: {self._error}")
        return self

    def stop(self) -> None:
        if self._thread is not None and isinstance(self._stop, tuple):
            loop, stop = self._stop
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(5)
            self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


Broker = PrivateBroker | EmbeddedBroker


def start_private_broker(
    terminal_users: Sequence[str] = (),
    quiet: bool = False,
    *,
    passwords: Mapping[str, str] | None = None,
    extra_service_users: Sequence[str] = (),
) -> Broker:
    """mosquitto when installed, else the embedded broker (with a note on stderr)."""
    if find_mosquitto() is not None:
        return PrivateBroker(
            terminal_users=terminal_users,
            passwords=passwords,
            extra_service_users=extra_service_users,
        ).start()
    broker = EmbeddedBroker()
    if not quiet:
        print(EmbeddedBroker.NOTE, file=sys.stderr)
    return broker.start()


@contextlib.contextmanager
def private_broker(terminal_users: Sequence[str] = ()) -> Iterator[Broker]:
    """`start_private_broker` as a context manager: the broker stops on exit."""
    broker = start_private_broker(terminal_users)
    try:
        yield broker
    finally:
        broker.close()
