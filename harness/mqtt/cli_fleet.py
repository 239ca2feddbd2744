"""`posharness fleet` (registered by harness/mqtt/cli.py, which parses its arguments):
N terminals at R purchases/s against a host this command starts, over MQTT or TCP,
with the fleet's verdicts. Moved out of cli.py, unchanged."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .broker import BrokerError
from .cli import _broker_or, _cancel_on_signals, _login, _setup_logging, print_report
from .fleet_procs import (
    fleet_hosts_problem,
    fleet_worker_users,
    host_users,
    hosts_cpu_s,
    kill_host_later,
    run_fleet_processes,
    start_host_processes,
)
from .fleet_remote_cli import _db_url, cmd_fleet_join, coordinate_run, remote_problem
from .wire import BrokerAddress

if TYPE_CHECKING:
    from .fleet import FleetReport


def cmd_fleet(args: argparse.Namespace) -> int:
    from faults import FaultSpecError

    from . import keys as keygen
    from .fleet import FleetOptions, report_to_wire, run_fleet
    from .hostdb import load_keys, provision, terminal_id
    from .proxy import FaultPlan, load_plan

    _setup_logging()
    if args.db and args.db.startswith("env:"):
        args.db = _db_url(args.db)  # the URL, with its password, stays off argv
    problem = _fleet_args_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.join:
        return cmd_fleet_join(args)
    from harness.runner import load_firmware

    factory = load_firmware(args.firmware)  # UsageError (exit 2) when unknown
    plan: FaultPlan | None = None
    if args.faults:
        try:
            plan = load_plan(args.faults)
        except (FaultSpecError, OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
            print(f"error: {args.faults}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
    opts = FleetOptions(
        terminals=args.terminals,
        rate_per_s=args.rate,
        duration_s=args.duration,
        codec=args.codec,
        durable_journal=not args.volatile_journal,
        response_timeout_ms=args.timeout_ms,
        first_terminal=args.first_terminal,
        wallet_share=args.wallet_share,
    )
    if args.worker_of:
        # Keys from the host's database (a private temporary file), never from argv.
        part = asyncio.run(
            run_fleet(
                BrokerAddress.parse(args.broker),
                args.worker_of,
                opts,
                firmware=factory,
                mac_keys=load_keys(args.worker_of),
            )
        )
        print(json.dumps(report_to_wire(part)))
        return 0
    tmp_stack = ExitStack()
    tmp = tempfile.TemporaryDirectory(prefix="posharness-fleet-host-")
    db = str(Path(tmp.name) / "host.db")
    if args.db:
        # A private schema in the named database, dropped at the end (the verdicts
        # judge every row of the host's books).
        from acquirer.pgstore import scratch_schema

        db = tmp_stack.enter_context(scratch_schema(args.db, "fleet"))
    # Random keys for this run, kept in the host's database only (in a 0700 directory).
    mac_keys = keygen.mac_keys(
        keygen.generate(terminal_id(n) for n in range(1, args.terminals + 1))
    )
    provision(db, mac_keys)
    if args.transport == "tcp":
        from harness.tcp.commands import fleet_tcp

        with tmp, tmp_stack:
            report = fleet_tcp(db, opts, factory, mac_keys, plan)
        if report is None:
            return 1
        print(json.dumps(report.to_json())) if args.json else print_report(report)
        return 0 if report.invariants_ok else 1
    workers = args.procs if args.procs > 1 else 0
    with _broker_or(
        args.broker, [], fleet_workers=workers, service_users=host_users(args.hosts)
    ) as (broker, address):
        host_addr = _login(broker, address, "acquirer")

        try:
            report = asyncio.run(
                _fleet_main(args, broker, address, host_addr, db, opts, factory, plan, mac_keys)
            )
        except (KeyboardInterrupt, asyncio.CancelledError):
            tmp_stack.close()
            tmp.cleanup()
            print("fleet: interrupted; stopped cleanly", file=sys.stderr)
            return 1
        except BrokerError as exc:
            tmp_stack.close()
            tmp.cleanup()
            print(f"fleet: {exc}", file=sys.stderr)
            return 1
    tmp_stack.close()
    tmp.cleanup()
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_report(report)
    return 0 if report.invariants_ok else 1


def _fleet_args_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `fleet`'s options (exit 2), or None."""
    if args.terminals < 1 or args.rate <= 0 or args.duration <= 0:
        return "--terminals, --rate and --duration must be positive"
    if args.procs < 1 or args.procs > args.terminals:
        return "--procs must be between 1 and --terminals"
    if args.procs > 1 and args.faults:
        return "--faults needs a single fleet process (--procs 1)"
    if args.transport == "tcp" and (args.procs > 1 or args.broker or args.hosts > 1):
        return "--transport tcp takes no --procs, --broker or --hosts yet"
    return fleet_hosts_problem(args) or remote_problem(args)


async def _fleet_main(
    args: argparse.Namespace,
    broker: Any,
    address: Any,
    host_addr: Any,
    db: str,
    opts: Any,
    factory: Any,
    plan: Any,
    mac_keys: Any,
) -> FleetReport:
    """The fleet run over a broker: host processes (or one in-process host), the
    fleet (one process, several, or remote workers), the host's CPU, and a verdict
    that fails when a host process died."""
    from .fleet import run_fleet
    from .host_service import HostService

    service = None
    _cancel_on_signals()
    procs: list[asyncio.subprocess.Process] = []
    if args.inproc_host:
        service = HostService(host_addr, db)
        await service.start()
    else:
        hosts = [host_addr] + [_login(broker, address, u) for u in host_users(args.hosts)]
        procs = await start_host_processes(hosts, db)
    victim = kill_host_later(procs, args.kill_host_after)
    host_cpu0 = hosts_cpu_s(procs)
    try:
        fleet_addr = _login(broker, address, "fleet")
        if args.remote_workers:
            report = await coordinate_run(fleet_addr, db, args)
        elif args.procs > 1:
            # One login per worker: the broker makes the user name the client
            # id (use_username_as_clientid), so workers must not share one.
            logins = [_login(broker, address, user) for user in fleet_worker_users(args.procs)]
            report = await run_fleet_processes(logins, db, args)
        else:
            report = await run_fleet(
                fleet_addr,
                db,
                opts,
                firmware=factory,
                plan=plan,
                proxy_address=_login(broker, address, "proxy"),
                mac_keys=mac_keys,
            )
        host_cpu = hosts_cpu_s(procs)
        if host_cpu is not None and host_cpu0 is not None:
            report.host_cpu_s = host_cpu - host_cpu0
        dead = [p.returncode for p in procs if p.returncode is not None and p is not victim]
        if dead:
            # The verdict cannot be trusted if the host was gone for part of it.
            report.invariants["host-alive"] = [
                f"an acquirer process died during the run (exit {dead[0]})"
            ]
        return report
    finally:
        if service is not None:
            await service.stop()
        for proc in procs:
            if proc.returncode is None:
                with suppress(ProcessLookupError):
                    proc.terminate()
            await proc.wait()
