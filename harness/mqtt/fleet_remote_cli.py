"""`posharness fleet --remote-workers N` and `fleet --join RUN` (harness/mqtt/fleet_remote.py):
their argument checks and the glue to `cmd_fleet`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING

from .wire import BrokerAddress

if TYPE_CHECKING:
    from .fleet import FleetReport


def remote_problem(args: argparse.Namespace) -> str:
    """What is wrong with `--remote-workers` / `--join` ("" if nothing)."""
    from acquirer.store import is_url

    from .fleet_remote import RUN_NAME, WORKERS_MAX

    if not (args.remote_workers or args.join):
        return ""
    if args.remote_workers and args.join:
        return "--remote-workers (the coordinator) and --join (a worker) are two commands"
    if args.remote_workers and not 1 <= args.remote_workers <= min(WORKERS_MAX, args.terminals):
        return f"--remote-workers must be between 1 and {WORKERS_MAX} (and --terminals)"
    run = args.join or args.run
    if not RUN_NAME.fullmatch(run):
        return f"run name {run[:80]!r}: 1-64 letters, digits, '-' or '_'"
    if not args.broker:
        return "workers on other machines meet on a broker they all reach: give --broker URL"
    db = _db_url(args.db) if args.db else ""
    if not db or not is_url(db):
        return "workers judge from the host's books: give --db postgresql://... (or env:NAME)"
    if args.procs > 1 or args.faults or args.transport != "mqtt" or args.inproc_host:
        return "--remote-workers/--join take no --procs, --faults, --inproc-host or --transport tcp"
    return ""


def _db_url(value: str) -> str:
    """--db, or for `env:NAME` the URL in that environment variable (a password in a
    URL does not belong on a command line, where any local user can read it)."""
    if value.startswith("env:"):
        import os

        return os.environ.get(value[4:], "")
    return value


def _schema_of(db: str) -> str:
    found = re.search(r"search_path%3D(fleet_[0-9a-f]{12})$", db)
    if found is None:
        raise ValueError(f"no fleet schema in the run's database URL {db[-60:]!r}")
    return found.group(1)


async def coordinate_run(address: BrokerAddress, db: str, args: argparse.Namespace) -> FleetReport:
    """The coordinator's part of `cmd_fleet`: the remote workers drive the load."""
    from .broker import BrokerError
    from .fleet_remote import RemoteError, coordinate

    try:
        schema = _schema_of(db)
    except ValueError as exc:
        raise BrokerError(str(exc)) from None
    slice_of = {
        "duration_s": args.duration,
        "codec": args.codec,
        "timeout_ms": args.timeout_ms,
        "firmware": args.firmware,
        "wallet_share": args.wallet_share,
        "volatile_journal": bool(args.volatile_journal),
        "schema": schema,
    }
    print(
        f"fleet: run {args.run!r} open on {address.url()}: waiting for "
        f"{args.remote_workers} workers (posharness fleet --join {args.run} "
        "--broker URL --db URL)",
        file=sys.stderr,
    )
    try:
        return await coordinate(
            address,
            args.run,
            args.remote_workers,
            slice_of,
            args.terminals,
            args.rate,
            args.join_timeout,
        )
    except RemoteError as exc:
        raise BrokerError(str(exc)) from None


def cmd_fleet_join(args: argparse.Namespace) -> int:
    """`posharness fleet --join RUN`: one worker of a run another machine coordinates."""
    from .broker import BrokerError
    from .cli import print_report
    from .fleet_remote import RemoteError, default_worker_id, join

    worker = args.worker_id or default_worker_id()
    try:
        address = BrokerAddress.parse(args.broker)
        report = asyncio.run(
            join(address, args.join, worker, _db_url(args.db), args.firmware, args.join_timeout)
        )
    except (RemoteError, BrokerError, ValueError, OSError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json())) if args.json else print_report(report)
    return 0 if report.invariants_ok else 1
