"""The processes `posharness fleet` starts: its workers (`--procs`) and the host.

Moved here unchanged from harness/mqtt/cli.py, which uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .broker import BrokerError
from .wire import BrokerAddress

if TYPE_CHECKING:
    from .fleet import FleetReport


def _process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) process `pid` has used, from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def fleet_worker_users(procs: int) -> list[str]:
    """Broker users of the `--procs` fleet workers: fleet-1 .. fleet-P."""
    return [f"fleet-{i}" for i in range(1, procs + 1)] if procs > 1 else []


async def run_fleet_processes(
    logins: list[BrokerAddress], db: str, args: argparse.Namespace
) -> FleetReport:
    """`--procs P`: P fleet processes, each with its share of terminals and rate.

    One asyncio loop (one core) drives every terminal of a process; more processes
    let the load side use more than one core. Each worker has its own journal file
    and judges its own terminals; the reports are merged.
    """
    from .fleet import merge_reports, report_from_wire

    procs = args.procs
    sizes = [
        args.terminals // procs + (1 if i < args.terminals % procs else 0) for i in range(procs)
    ]
    children = []
    first = 1
    for size, address in zip(sizes, logins, strict=True):
        cmd = [sys.executable, "-m", "harness.mqtt", "fleet", "--worker-of", db]
        cmd += ["--broker", f"env:{BROKER_ENV}", "--first-terminal", str(first)]
        cmd += ["--terminals", str(size), "--rate", str(args.rate * size / args.terminals)]
        cmd += ["--duration", str(args.duration), "--codec", args.codec]
        cmd += ["--timeout-ms", str(args.timeout_ms), "--firmware", args.firmware]
        cmd += ["--wallet-share", str(args.wallet_share)]
        if args.volatile_journal:
            cmd.append("--volatile-journal")
        children.append(
            await asyncio.create_subprocess_exec(
                *cmd, stdout=subprocess.PIPE, env=_env_with_broker(address)
            )
        )
        first += size
    outputs = await asyncio.gather(*(c.communicate() for c in children))
    parts = []
    for child, (out, _) in zip(children, outputs, strict=True):
        if child.returncode != 0 or not out.strip():
            raise BrokerError(f"fleet worker exited with status {child.returncode}")
        try:
            parts.append(report_from_wire(json.loads(out.decode().strip().splitlines()[-1])))
        except ValueError as exc:  # JSONDecodeError too
            raise BrokerError(f"fleet worker: unreadable report: {exc}") from None
    return merge_reports(parts)


# Child processes get the broker URL (with its password) in their environment, never
# on their command line, which any local user can read in /proc/PID/cmdline.
BROKER_ENV = "POSHARNESS_BROKER_URL"


def _env_with_broker(address: BrokerAddress) -> dict[str, str]:
    return {**os.environ, BROKER_ENV: address.url(show_password=True)}


def host_users(hosts: int) -> list[str]:
    """Broker users of the second and later host processes (`fleet --hosts H`): the
    private broker makes the user name the client id, so instances must not share one."""
    return [f"acquirer-{i}" for i in range(2, hosts + 1)]


async def start_host_processes(
    logins: list[BrokerAddress], db: str
) -> list[asyncio.subprocess.Process]:
    """One host process on `db` per login; more than one share the requests
    (`--share fleet`)."""
    share = "fleet" if len(logins) > 1 else ""
    return [await start_host_process(address, db, share) for address in logins]


async def _serve_process(
    db: str, where: list[str], env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, list[bytes]]:
    """`python -m harness.mqtt acquirer serve --db DB` with `where` (a broker or a TCP
    listener) in its own process; returns it and the lines it printed, once "ready"."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "harness.mqtt", "acquirer", "serve", *where),
        *("--db", db, "--provision", "0"),
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    async with asyncio.timeout(30):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise BrokerError("acquirer process exited before serving")
            if line.strip() == b"ready":
                return proc, lines
            lines.append(line)


async def start_tcp_host_process(db: str) -> tuple[asyncio.subprocess.Process, int]:
    """`acquirer serve --listen tcp://127.0.0.1:0` in its own process on `db` (its
    terminals already provisioned); returns it and its port once it serves."""
    proc, lines = await _serve_process(db, ["--listen", "tcp://127.0.0.1:0"])
    serving = [x for x in lines if x.startswith(b"acquirer: serving tcp://")]
    return proc, int(serving[0].split()[2].rsplit(b":", 1)[1])


async def start_host_process(
    address: BrokerAddress, db: str, share: str = ""
) -> asyncio.subprocess.Process:
    """`python -m harness.mqtt acquirer serve` in its own process; returns once it serves."""
    where = ["--broker", f"env:{BROKER_ENV}", *(["--share", share] if share else [])]
    return (await _serve_process(db, where, _env_with_broker(address)))[0]


def hosts_cpu_s(procs: list[asyncio.subprocess.Process]) -> float | None:
    """CPU seconds the host processes have used together (None if unknown)."""
    each = [_process_cpu_s(p.pid) for p in procs]
    return None if not each or None in each else sum(c for c in each if c is not None)


def fleet_hosts_problem(args: argparse.Namespace) -> str:
    """What is wrong with `fleet --db` and `--hosts` ("" if nothing)."""
    from acquirer.store import is_url

    if args.db is not None and not is_url(args.db):
        return f"--db {args.db!r}: fleet takes a postgresql:// URL (default: a SQLite file)"
    if args.hosts < 1 or args.hosts > 16:
        return "--hosts must be between 1 and 16"
    if args.hosts > 1 and (args.db is None or args.inproc_host):
        return "--hosts > 1 needs --db postgresql://... and separate host processes"
    if args.kill_host_after is not None and (args.hosts < 2 or args.kill_host_after < 0):
        return "--kill-host-after needs --hosts 2 or more, and seconds >= 0"
    return ""


def kill_host_later(
    procs: list[asyncio.subprocess.Process], after_s: float | None
) -> asyncio.subprocess.Process | None:
    """`fleet --kill-host-after S`: kill -9 the last host process S seconds from now
    (the others serve on); returns the one that will be killed."""
    if after_s is None or len(procs) < 2:
        return None
    victim = procs[-1]

    def kill() -> None:
        if victim.returncode is None:
            victim.kill()
            print(f"fleet: killed host process {victim.pid} (kill -9)", file=sys.stderr)

    asyncio.get_running_loop().call_later(after_s, kill)
    return victim
