"""`python -m harness.mqtt acquirer|terminal|fleet ...` (also reachable as `posharness ...`)."""

from __future__ import annotations

import argparse
import sys

from harness.runner import UsageError

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.mqtt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"posharness: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
