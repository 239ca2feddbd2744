"""The arguments of `posharness fleet` (moved unchanged out of harness/mqtt/cli.py,
which registers them; the command runs in harness/mqtt/cli_fleet.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .wire import CODECS


def register_fleet(sub: Any, cmd_fleet: Callable[[argparse.Namespace], int]) -> None:
    """Add the `fleet` subcommand to `sub` (argparse subparsers), running `cmd_fleet`."""
    fl = sub.add_parser("fleet", help="N terminals at R purchases/s, with invariant verdicts")
    fl.add_argument("--terminals", type=int, default=10)
    fl.add_argument("--rate", type=float, default=100.0, help="purchases per second in total")
    fl.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    fl.add_argument("--faults", help="fault plan TOML ([[faults]] as in scenarios, [bursty_loss])")
    fl.add_argument("--json", action="store_true", help="print one JSON object")
    fl.add_argument("--broker", help="mqtt://[user:pass@]host:port (default: private broker)")
    fl.add_argument("--codec", choices=CODECS, default="iso8583")
    fl.add_argument(
        "--transport",
        choices=("mqtt", "tcp"),
        default="mqtt",
        help="tcp: the host on a loopback TCP listener, the terminals on one TCP connection "
        "(no broker; docs/tcp.md)",
    )
    fl.add_argument(
        "--firmware",
        default="reference",
        help="every terminal's firmware: reference, zoo:NAME, module:Class, exec:COMMAND",
    )
    fl.add_argument(
        "--volatile-journal",
        action="store_true",
        help="terminal journals without fsync (load tests of the host)",
    )
    fl.add_argument("--timeout-ms", type=int, default=3000, help="terminal response timeout")
    fl.add_argument(
        "--inproc-host",
        action="store_true",
        help="run the host in this process (default: a separate process)",
    )
    fl.add_argument(
        "--db",
        metavar="URL",
        help="the host's database: postgresql://... (a private schema in it, dropped "
        "after; default: a private SQLite file)",
    )
    fl.add_argument(
        "--hosts",
        type=int,
        default=1,
        metavar="H",
        help="H host processes sharing the requests (--share; needs --db postgresql://...)",
    )
    fl.add_argument(
        "--kill-host-after",
        type=float,
        metavar="S",
        help="with --hosts 2 or more: kill -9 one host process S seconds into the load",
    )
    fl.add_argument(
        "--procs",
        type=int,
        default=1,
        metavar="P",
        help="split the terminals over P fleet processes (default 1; not with --faults)",
    )
    fl.add_argument(
        "--remote-workers",
        type=int,
        default=0,
        metavar="N",
        help="coordinate a run whose terminals N workers on other machines drive "
        "(fleet --join RUN there; needs --broker and --db postgresql://...)",
    )
    fl.add_argument("--run", default="fleet", metavar="NAME", help="the run's name (default fleet)")
    fl.add_argument(
        "--join",
        metavar="RUN",
        help="be one worker of run RUN, which another `fleet --remote-workers` coordinates",
    )
    fl.add_argument("--worker-id", metavar="ID", help="this worker's name (default host-pid)")
    fl.add_argument(
        "--join-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="how long the coordinator waits for workers, and a worker for its slice",
    )
    # Internal: one of --procs workers, against a host already serving this database.
    fl.add_argument("--worker-of", metavar="DB", help=argparse.SUPPRESS)
    fl.add_argument("--first-terminal", type=int, default=1, help=argparse.SUPPRESS)
    fl.add_argument(
        "--wallet-share",
        type=_share,
        default=0.0,
        metavar="F",
        help="this share (0-1) of the purchases is paid by scanning a wallet code",
    )
    fl.set_defaults(func=cmd_fleet)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value
