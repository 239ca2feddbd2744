"""The TCP forms of `acquirer serve` and `terminal run` (`--listen`, `--host`), called by
harness/mqtt/cli.py, which parses the arguments and owns the MQTT forms."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import suppress
from typing import TYPE_CHECKING

from harness.mqtt.cli import _cancel_on_signals, _drive, _stop_on_signals

if TYPE_CHECKING:
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

    async def main() -> None:
        stopping = asyncio.Event()
        _stop_on_signals(stopping.set)
        await serve_forever(args.db, opts, stopping)
        print("acquirer: stopped", flush=True)

    try:
        with suppress(KeyboardInterrupt):
            asyncio.run(main())
    except OSError as exc:
        print(f"error: {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def terminal_run_tcp(
    args: argparse.Namespace,
    firmware: Firmware,
    cfg: FirmwareConfig,
    purchases: list[tuple[int, str, bool] | None],
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

    async def main() -> int:
        journal = Journal(args.journal or f"{args.id}.journal.db")
        client = TcpTerminalClient(host, port, args.header)
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

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("terminal: interrupted; stopped cleanly (journal kept)", file=sys.stderr)
        return 1
