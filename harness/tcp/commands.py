"""The TCP forms of `acquirer serve`, `terminal run` and `fleet` (`--listen`, `--host`,
`--transport tcp`), called by harness/mqtt/cli.py, which parses the arguments and owns the
MQTT forms."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING

from harness.mqtt.broker import BrokerError
from harness.mqtt.cli import _cancel_on_signals, _drive, _stop_on_signals

if TYPE_CHECKING:
    from harness.mqtt.credit_lines import Credit
    from harness.mqtt.fleet import FleetOptions, FleetReport
    from harness.mqtt.proxy import FaultPlan
    from harness.tcp.standard import StandardTerminal
    from terminal.firmware import Firmware, FirmwareConfig


def serve_tcp(args: argparse.Namespace) -> int:
    """`acquirer serve --listen tcp://...`: the host on a TCP listener until a signal."""
    from .server import TcpOptions, parse_listen, serve_forever

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    opts = TcpOptions(host, port, args.header, args.tpdu, rate_limit_per_s=args.rate_limit)
    standard = None
    if args.standard_terminals is not None:
        standard = _standard_terminals(args.standard_terminals)
        if standard is None:
            return 2

    async def main() -> None:
        stopping = asyncio.Event()
        _stop_on_signals(stopping.set)
        await serve_forever(args.db, opts, stopping, standard)
        print("acquirer: stopped", flush=True)

    try:
        with suppress(KeyboardInterrupt):
            asyncio.run(main())
    except OSError as exc:
        print(f"error: {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _standard_terminals(path: str) -> dict[str, StandardTerminal] | None:
    """The standard-terminal config at `path`, or None after one line on stderr."""
    from harness.mqtt.keys import KeyFileError

    from .standard import load_standard_terminals

    try:
        return load_standard_terminals(path)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def terminal_run_tcp(
    args: argparse.Namespace,
    firmware: Firmware,
    cfg: FirmwareConfig,
    purchases: list[tuple[int, str, str] | Credit | None],
) -> int:
    """`terminal run --host tcp://...`: the terminal on a TCP connection to a host."""
    from harness.mqtt.journal import Journal
    from harness.mqtt.terminal_driver import TerminalDriver

    from .client import TcpTerminalClient
    from .server import parse_listen

    try:
        host, port = parse_listen(args.host)
    except ValueError as exc:
        print(f"error: {str(exc).replace('--listen', '--host')}", file=sys.stderr)
        return 2

    link = None
    if args.standard_host is not None:
        from .standard_host import StandardHostLink

        terminals = _standard_terminals(args.standard_host)
        if terminals is None:
            return 2
        if args.id not in terminals:
            print(f"error: {args.standard_host}: no entry for terminal {args.id}", file=sys.stderr)
            return 2
        link = StandardHostLink({args.id: terminals[args.id]}, {args.id: cfg.mac_key})
        for line in link.banner():
            print(f"terminal: {line}", file=sys.stderr, flush=True)

    async def main() -> int:
        journal = Journal(args.journal or f"{args.id}.journal.db")
        client = TcpTerminalClient(host, port, args.header, link=link)
        driver = client.add(
            lambda publish: TerminalDriver(firmware, cfg, journal, publish, codec=args.codec)
        )
        driver.chip_cards = getattr(args, "chip_cards", {})
        _cancel_on_signals()
        try:
            await client.start()
            return 1 if await _drive(driver, purchases) else 0
        finally:
            await client.stop()
            journal.close()
            if link is not None:  # what crossed the plain link, by MTI
                print(json.dumps({"link": dict(sorted(link.stats.items()))}), flush=True)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("terminal: interrupted; stopped cleanly (journal kept)", file=sys.stderr)
        return 1


def fleet_tcp(
    db: str,
    opts: FleetOptions,
    factory: Callable[[FirmwareConfig], Firmware],
    mac_keys: Mapping[str, bytes],
    plan: FaultPlan | None = None,
) -> FleetReport | None:
    """`fleet --transport tcp`: the host (`acquirer serve --listen`) in its own process
    on `db`, the fleet's terminals on one TCP connection to it (through the TCP fault
    proxy with `plan`); the report, or None (said on stderr) when interrupted or the
    host would not start."""
    from harness.mqtt.fleet import run_fleet
    from harness.mqtt.fleet_procs import _process_cpu_s, start_tcp_host_process
    from harness.mqtt.wire import BrokerAddress

    async def main() -> FleetReport:
        proc, port = await start_tcp_host_process(db)
        cpu0 = _process_cpu_s(proc.pid)
        try:
            address = BrokerAddress()  # unused: no broker on TCP
            report = await run_fleet(
                address,
                db,
                opts,
                firmware=factory,
                plan=plan,
                mac_keys=mac_keys,
                tcp=("127.0.0.1", port),
            )
            cpu = _process_cpu_s(proc.pid)
            if cpu is not None and cpu0 is not None:
                report.host_cpu_s = cpu - cpu0
            if proc.returncode is not None:
                report.invariants["host-alive"] = [
                    f"the acquirer process died during the run (exit {proc.returncode})"
                ]
            return report
        finally:
            if proc.returncode is None:
                with suppress(ProcessLookupError):
                    proc.terminate()
            await proc.wait()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fleet: interrupted; stopped cleanly", file=sys.stderr)
    except BrokerError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
    return None
