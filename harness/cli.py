"""`posharness`: run scenario suites, list what is known.

Exit codes: 0 every scenario met its [expect]; 1 some did not; 2 bad usage or a bad
input file (one line on stderr naming the file and the problem, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from scenarios.loader import find_scenarios, load_scenario
from scenarios.model import INVARIANT_NAMES, Scenario, ScenarioError

from .runner import RunResult, UsageError, firmware_names, load_firmware, run_scenario

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_SUITE = Path("scenarios")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _console() -> Console:
    # Plain text (no colours, fixed width) when not writing to a terminal.
    if sys.stdout.isatty():
        return Console()
    return Console(no_color=True, width=160, soft_wrap=False, highlight=False)


def _load_all(paths: Sequence[str]) -> list[Scenario]:
    return [load_scenario(p) for p in find_scenarios(paths)]


def cmd_run(args: argparse.Namespace) -> int:
    scenarios = _load_all(args.paths or [str(DEFAULT_SUITE)])
    if not scenarios:
        raise UsageError(f"no scenario files (*.toml) under {' '.join(args.paths)}")
    if args.firmware:
        load_firmware(args.firmware)  # fail fast with exit 2 on a bad spec
    trace_dir = Path(args.trace_dir) if args.trace_dir else None
    console = _console()
    results: list[RunResult] = []
    for sc in scenarios:
        results.append(
            run_scenario(sc, args.firmware, seed=args.seed, trace_dir=trace_dir)
        )
    from .report import failure_details, results_table, write_junit

    results_table(results, console)
    failure_details(results, console)
    passed = sum(1 for r in results if r.passed)
    console.print(
        f"{passed} passed, {len(results) - passed} failed "
        f"({sum(r.purchases for r in results)} purchases simulated, "
        f"{sum(r.wall_s for r in results):.2f} s wall)",
        markup=False,
        highlight=False,
    )
    if args.junit:
        write_junit(results, Path(args.junit))
    return EXIT_OK if passed == len(results) else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    import faults
    from .invariants import DESCRIPTIONS

    paths = args.paths or ([str(DEFAULT_SUITE)] if DEFAULT_SUITE.exists() else [])
    scenarios = _load_all(paths) if paths else []
    kinds = sorted(faults.REGISTRY)
    if args.json:
        print(
            json.dumps(
                {
                    "scenarios": [
                        {"name": s.name, "path": s.source, "description": s.description}
                        for s in scenarios
                    ],
                    "firmwares": firmware_names(),
                    "faults": kinds,
                    "invariants": list(INVARIANT_NAMES),
                },
                indent=2,
            )
        )
        return EXIT_OK
    console = _console()
    from rich.table import Table

    t = Table(title="scenarios")
    t.add_column("name")
    t.add_column("file")
    t.add_column("description", overflow="fold")
    for s in scenarios:
        t.add_row(s.name, s.source, s.description)
    console.print(t)
    from terminal.zoo import ZOO

    t = Table(title="firmwares")
    t.add_column("spec")
    t.add_column("what it models", overflow="fold")
    t.add_row("reference", "prevents all five field failures")
    for name, cls in ZOO.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        t.add_row(f"zoo:{name}", doc[0] if doc else "")
    console.print(t)
    t = Table(title="fault kinds")
    t.add_column("kind")
    t.add_column("layer")
    t.add_column("what it does", overflow="fold")
    for k in kinds:
        cls = faults.REGISTRY[k]
        t.add_row(k, cls.LAYER, cls.SUMMARY)
    console.print(t)
    t = Table(title="invariants")
    t.add_column("name")
    t.add_column("what it checks", overflow="fold")
    for name in INVARIANT_NAMES:
        t.add_row(name, DESCRIPTIONS[name])
    console.print(t)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="posharness", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run scenario files or directories and judge them")
    r.add_argument("paths", nargs="*", help="scenario files or directories (default: scenarios/)")
    r.add_argument("--firmware", help="reference | zoo:NAME | module:Class (overrides the files)")
    r.add_argument("--seed", type=int, help="override every scenario's seed")
    r.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    r.add_argument("--trace-dir", metavar="DIR", help="write one JSON-lines trace per scenario")
    r.set_defaults(func=cmd_run)
    ls = sub.add_parser("list", help="list scenarios, firmwares, fault kinds and invariants")
    ls.add_argument("paths", nargs="*", help="scenario files or directories (default: scenarios/)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ScenarioError, UsageError) as exc:
        print(f"posharness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
