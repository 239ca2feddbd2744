"""`posharness acquirer provision`: give one more terminal its secrets.

Draws a fresh MAC key and broker password for the terminal, adds it to the host's key
file (created 0600 if missing) and to the host database's key table, and writes the
terminal's own credentials file: a key file (mode 0600) holding only its entry, which
`posharness terminal run --keys FILE`, examples/terminal-js and any terminal reading the
key-file format (docs/mqtt.md, "Keys") can use as it is. The broker user is the terminal
id. A terminal already in the key file is refused (a new key would lock out the device
holding the old one). A running `acquirer serve` reads keys and broker passwords when it
starts: restart it to admit the new terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .keys import KeyFileError, generate, load_key_file, write_key_file


def add_provision_command(acq_sub: Any) -> None:
    """Add `provision` under `posharness acquirer`."""
    p = acq_sub.add_parser("provision", help="add a terminal: fresh key and broker login")
    p.add_argument(
        "--db", required=True, help="the host's SQLite file or postgresql:// URL (as for serve)"
    )
    p.add_argument(
        "--terminal", required=True, metavar="TID", help="terminal id (1-8 letters/digits)"
    )
    p.add_argument("--keys", metavar="FILE", help="the host's key file (default: DB.keys.json)")
    p.add_argument("--out", required=True, metavar="FILE", help="the terminal's credentials file")
    p.set_defaults(func=cmd_acquirer_provision)


def cmd_acquirer_provision(args: argparse.Namespace) -> int:
    from .hostdb import provision

    tid = args.terminal
    keys_path = Path(args.keys or f"{args.db}.keys.json")
    out = Path(args.out)
    if not (1 <= len(tid) <= 8 and tid.isascii() and tid.isalnum()):
        return _usage(f"--terminal {tid[:20]!r}: a terminal id is 1-8 letters or digits")
    if out.exists():
        return _usage(f"{out}: exists; give a new file (credentials are never overwritten)")
    try:
        known = load_key_file(keys_path) if keys_path.exists() else {}
    except KeyFileError as exc:
        return _usage(str(exc))
    if tid in known:
        return _usage(f"{keys_path}: {tid} is already provisioned")
    fresh = generate([tid])
    try:
        write_key_file(out, fresh)
        write_key_file(keys_path, {**known, **fresh})
        provision(args.db, {tid: fresh[tid].mac_key})
    except OSError as exc:
        return _usage(f"{exc.filename or out}: {exc.strerror}")
    print(
        f"acquirer: provisioned {tid}: its credentials (MAC key, broker user {tid} and "
        f"password) are in {out} (mode 0600); added to {keys_path} and {args.db}"
    )
    print(
        f"acquirer: restart `posharness acquirer serve --db {args.db}` to admit it; the "
        f"terminal connects with: posharness terminal run --id {tid} --keys {out} --broker URL"
    )
    return 0


def _usage(message: str) -> int:
    print(f"posharness: {message}", file=sys.stderr)
    return 2
