"""`posharness`: run scenario suites, list what is known.

Exit codes: 0 every scenario met its [expect]; 1 some did not; 2 bad usage or a bad
input file (one line on stderr naming the file and the problem, never a traceback).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
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
    report_dir = Path(args.report) if args.report else None
    if report_dir is not None and trace_dir is None:
        trace_dir = report_dir  # an HTML report is rendered from the trace
    run = run_scenario
    if args.transport == "mqtt":
        run = _mqtt_runner(args.time_scale)
    console = _console()
    results: list[RunResult] = []
    for sc in scenarios:
        results.append(run(sc, args.firmware, seed=args.seed, trace_dir=trace_dir))
    from .report import failure_details, results_table, write_junit

    results_table(results, console)
    failure_details(results, console)
    passed = sum(1 for r in results if r.passed)
    console.print(
        f"{passed} passed, {len(results) - passed} failed "
        f"({sum(r.purchases for r in results)} purchases, "
        f"{sum(r.wall_s for r in results):.2f} s wall)",
        markup=False,
        highlight=False,
    )
    if args.junit:
        write_junit(results, Path(args.junit))
    if report_dir is not None:
        from .htmlreport import write_html_report

        for r in results:
            if not r.passed and r.trace_path is not None:
                page = report_dir / (r.trace_path.stem + ".html")
                write_html_report(r.trace_path, page)
                console.print(f"report: {page}", markup=False, highlight=False)
    return EXIT_OK if passed == len(results) else EXIT_FAILED


def _mqtt_runner(time_scale: float) -> Callable[..., RunResult]:
    """`run_scenario` over a private mosquitto (exit 2 when it is not installed)."""
    from .mqtt.broker import SETUP_HINT, find_mosquitto
    from .mqtt.scenario_run import run_scenario_mqtt

    if find_mosquitto() is None:
        raise UsageError(f"--transport mqtt needs a broker: {SETUP_HINT}")
    if not time_scale > 0:
        raise UsageError(f"--time-scale must be > 0, got {time_scale}")
    return functools.partial(run_scenario_mqtt, time_scale=time_scale)


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


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import PROFILES, campaign, open_database, parse_shard, timeline

    if args.budget is not None and args.budget <= 0:
        raise UsageError("--budget must be > 0 seconds")
    if args.examples is not None and args.examples <= 0:
        raise UsageError("--examples must be > 0")
    if args.profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}")
    shard = parse_shard(args.shard)
    database = open_database(args.db)
    console = _console()
    from rich.live import Live
    from rich.text import Text

    from .fuzz import Stats

    def status(stats: Stats) -> Text:
        return Text(
            f"fuzz {args.firmware}: {stats.examples} examples ({stats.rate():.0f}/s), "
            f"{stats.purchases} purchases, fault kinds exercised: {len(stats.kinds)} "
            f"({', '.join(sorted(stats.kinds)) or '-'})"
        )

    live = (
        Live(status(Stats()), console=console, transient=False, auto_refresh=False)
        if console.is_terminal
        else None
    )

    def progress(stats: Stats) -> None:
        if live is not None:
            live.update(status(stats), refresh=True)

    if live is not None:
        live.start()
    try:
        found, stats = campaign(
            args.firmware,
            examples=args.examples,
            budget_s=args.budget,
            campaign_seed=args.seed,
            out_dir=Path(args.out),
            profile=args.profile,
            shard=shard,
            database=database,
            on_progress=progress,
        )
    finally:
        if live is not None:
            live.stop()
    summary = (
        f"{stats.examples} examples, {stats.purchases} purchases simulated, "
        f"{len(stats.kinds)} fault kinds exercised, {stats.rate():.0f} examples/s"
    )
    if found is None:
        console.print(f"no violation found: {summary}", markup=False, highlight=False)
        return EXIT_OK
    console.print(
        f"VIOLATION {found.invariant} found at example {found.detect_example} "
        f"({found.detect_s:.1f} s), shrunk in {found.elapsed_s - found.detect_s:.1f} s "
        f"to {found.scenario.purchases()} purchases "
        f"and {len(found.scenario.faults)} faults:",
        markup=False,
        highlight=False,
    )
    console.print(f"  {found.explanation}", markup=False, highlight=False)
    if found.result.trace_path is not None:
        for line in timeline(found.result.trace_path):
            console.print(f"  {line}", markup=False, highlight=False)
    console.print(f"  scenario: {found.path}", markup=False, highlight=False)
    if found.result.trace_path is not None:
        console.print(f"  trace: {found.result.trace_path}", markup=False, highlight=False)
        if args.report:
            from .htmlreport import write_html_report

            page = Path(args.report) / (found.path.stem + ".html")
            write_html_report(found.result.trace_path, page)
            console.print(f"  report: {page}", markup=False, highlight=False)
    console.print(
        f"  reproduce: posharness run {found.path} --firmware {args.firmware}",
        markup=False,
        highlight=False,
    )
    return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="posharness", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run scenario files or directories and judge them")
    r.add_argument("paths", nargs="*", help="scenario files or directories (default: scenarios/)")
    r.add_argument("--firmware", help="reference | zoo:NAME | module:Class (overrides the files)")
    r.add_argument("--seed", type=int, help="override every scenario's seed")
    r.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    r.add_argument("--trace-dir", metavar="DIR", help="write one JSON-lines trace per scenario")
    r.add_argument("--report", metavar="DIR", help="write an HTML report of every failing scenario")
    r.add_argument(
        "--transport",
        choices=("sim", "mqtt"),
        default="sim",
        help="sim (virtual time, default) | mqtt (real broker, scaled real time)",
    )
    r.add_argument(
        "--time-scale",
        type=float,
        default=50.0,
        metavar="X",
        help="mqtt only: run time per wall time (default 50: a 15 s timeout takes 0.3 s)",
    )
    r.set_defaults(func=cmd_run)
    fz = sub.add_parser("fuzz", help="fuzz a firmware; shrink any violation to a scenario file")
    fz.add_argument("--firmware", default="reference", help="reference | zoo:NAME | module:Class")
    limit = fz.add_mutually_exclusive_group()
    limit.add_argument(
        "--budget", type=float, metavar="SECONDS", help="stop after this much wall time"
    )
    limit.add_argument("--examples", type=int, metavar="N", help="stop after N examples")
    fz.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    fz.add_argument("--out", default="fuzz-out", metavar="DIR", help="where shrunk scenarios go")
    fz.add_argument("--profile", default="ci", help="ci (derandomized, bounded) | dev | deep")
    fz.add_argument("--shard", metavar="I/N", help="run shard I of N (no overlap between shards)")
    fz.add_argument(
        "--db", metavar="URL", help="example database: redis://HOST:PORT/N or a directory"
    )
    fz.add_argument("--report", metavar="DIR", help="write an HTML report of the violation here")
    fz.set_defaults(func=cmd_fuzz)
    ls = sub.add_parser("list", help="list scenarios, firmwares, fault kinds and invariants")
    ls.add_argument("paths", nargs="*", help="scenario files or directories (default: scenarios/)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    from .cli_incident import register as register_incident
    from .mqtt.cli import register as register_mqtt

    register_incident(sub)
    register_mqtt(sub)
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
