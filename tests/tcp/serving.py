"""`acquirer serve --listen` in a child process, for tests that drive it from outside."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 60  # a hang becomes a failure after this long; nothing waits for it to pass


@contextmanager
def tcp_host_process(db: Path, extra: Sequence[str] = ()) -> Iterator[str]:
    """The host on `db` (T0001 provisioned, keys in DB.keys.json) listening on a free
    loopback port, with `extra` options; yields its tcp:// URL, and stops it on exit."""
    serve = ["acquirer", "serve", "--db", str(db), "--provision", "1", *extra]
    host = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *serve, "--listen", "tcp://127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        while not line.startswith("acquirer: serving tcp://"):
            assert line, "acquirer serve exited early"
            line = host.stdout.readline()
        yield line.split()[2]
    finally:
        host.terminate()
        host.communicate(timeout=GUARD_S)
