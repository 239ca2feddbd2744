"""`posharness frame purchase`: one signed request frame, printed for another tool.

For driving a host with a tool that does not know the protocol's MAC (for example
`iso8583sim send`, see docs/tcp.md): the frame is signed with the terminal's key from a
key file and stamped with the current time, with a fresh idempotency key, and printed
as ISO 8583 text (or JSON) on one line.

    posharness frame purchase --keys FILE --terminal T0001 --amount 1250 [--pan PAN]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

from acquirer import protocol as p
from acquirer.catalogue import PAN_APPROVE


def register(sub: Any) -> None:
    """Add `frame` to the top-level parser's subparsers."""
    f = sub.add_parser("frame", help="print one signed request frame (for other tools)")
    kinds = f.add_subparsers(dest="frame_kind", required=True)
    pur = kinds.add_parser("purchase", help="a 0200 purchase")
    pur.add_argument("--keys", required=True, metavar="FILE", help="key file with the terminal")
    pur.add_argument("--terminal", default="T0001", help="terminal id (default T0001)")
    pur.add_argument("--merchant", default="M000000000001", help="merchant id")
    pur.add_argument("--amount", type=int, required=True, help="minor units (1250 = 12.50)")
    pur.add_argument("--pan", default=PAN_APPROVE, help="card number (default: approves)")
    pur.add_argument("--stan", type=int, default=1, help="STAN 1-999999 (default 1)")
    pur.add_argument("--codec", choices=("iso8583", "json"), default="iso8583")
    pur.set_defaults(func=cmd_frame_purchase)


def cmd_frame_purchase(args: argparse.Namespace) -> int:
    from harness.mqtt import realclock, wire
    from harness.mqtt.keys import KeyFileError, load_key_file, secret_for

    try:
        key = secret_for(args.keys, load_key_file(args.keys), args.terminal).mac_key
        msg = p.Message(
            p.MTI_PURCHASE, args.terminal, args.merchant, args.stan, pan=args.pan,
            amount=args.amount, idem_key=f"{args.terminal}-{secrets.token_hex(8)}",
        )  # fmt: skip
        problem = p.validate_request(msg)
        if problem is not None:
            raise ValueError(problem)
        frame = wire.encode(p.stamp(p.sign(msg, key), key, realclock.wall_ms()), args.codec)
    except (KeyFileError, OSError, ValueError, p.ProtocolError) as exc:
        print(f"posharness: {exc}", file=sys.stderr)
        return 2
    print(frame.decode("ascii"))
    return 0
