"""`posharness`: run scenario suites, list what is known.

Exit codes: 0 every scenario met its [expect]; 1 some did not; 2 bad usage or a bad
input file (one line on stderr naming the file and the problem, never a traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

    from .fuzz import Found, Stats

from scenarios.loader import find_scenarios, load_scenario
from scenarios.model import INVARIANT_NAMES, Scenario, ScenarioError

from .progress import Ticker
from .report import (
    BadFile,
    Column,
    failure_details,
    make_console,
    print_table,
    results_table,
    say,
    summary_line,
    write_junit,
)
from .runner import (
    RunResult,
    UsageError,
    allow_external_firmware,
    firmware_names,
    load_firmware,
    plural,
    run_scenario,
    run_twice,
    unique_trace_path,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_SUITE = Path("scenarios")
# Piped fuzz output: a progress line this often (a 30 s default campaign: ~5 lines).
FUZZ_PROGRESS_S = 5.0


RUN_DESCRIPTION = """Run scenario files and judge each run by its [expect] table.

A recorded incident (a file whose [expect] lists `violated` invariants of its
own firmware) run with `--firmware X` for another firmware asks "is X fixed?":
the run must hold every invariant the file names, and is reported FIXED or
STILL FAILING. So `posharness run scenarios --firmware reference` is green."""

EXIT_CODES_HELP = """exit status:
  0  every scenario met its [expect] (PASS), or a recorded incident run with
     another firmware held every invariant it names (FIXED)
  1  some scenario did not (FAIL, STILL FAILING)
  2  bad usage or a bad scenario file (one line each on stderr; the other
     files still run)"""

GENERIC_EXIT_HELP = """exit status:
  0  success;  1  the check failed (a violation, a divergence, not fixed);
  2  bad usage or a bad input file (one line on stderr, never a traceback)"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "default" not in text and "%(default)" not in text:
            text = f"{text} (default: %(default)s)".strip()
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs.setdefault("epilog", GENERIC_EXIT_HELP)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        # An option with a default but no help still shows its default.
        if kwargs.get("help") is None and kwargs.get("default") not in (None, False):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return importlib.metadata.version("posharness")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def default_suite() -> Path:
    """`scenarios/` in the current directory, else the scenarios shipped with
    posharness; `run` and `list` both use it. UsageError when there is neither."""
    if DEFAULT_SUITE.is_dir():
        return DEFAULT_SUITE
    import scenarios

    packaged = Path(scenarios.__file__).resolve().parent
    if any(packaged.rglob("*.toml")):
        return packaged
    raise UsageError(
        "no scenarios/ directory here and no packaged scenarios: "
        "give scenario files or directories, e.g. posharness run my-scenarios/"
    )


def _load_all(paths: Sequence[str], bad: list[BadFile]) -> list[Scenario]:
    """Every scenario under `paths`. A file that does not load goes into `bad` (and
    is reported on stderr at once); the others still load."""
    out: list[Scenario] = []
    for p in find_scenarios(paths):
        try:
            out.append(load_scenario(p))
        except ScenarioError as exc:
            bad.append(BadFile(str(p), str(exc)))
            print(f"posharness: {exc}", file=sys.stderr)
    return out


def _run_all(
    scenarios: Sequence[Scenario],
    run: Callable[..., RunResult],
    args: argparse.Namespace,
    trace_dir: Path | None,
    bad: list[BadFile],
    console: Console,
) -> list[RunResult]:
    results: list[RunResult] = []
    taken: set[str] = set()  # trace file names used: same-named scenarios stay apart
    ticker = Ticker(console, "run", total=len(scenarios))
    try:
        for done, sc in enumerate(scenarios, 1):
            spec = args.firmware or sc.firmware
            seed = sc.seed if args.seed is None else args.seed
            trace = unique_trace_path(trace_dir, sc, spec, seed, taken) if trace_dir else None
            try:
                results.append(run(sc, args.firmware, seed=args.seed, trace_path=trace))
            except UsageError as exc:  # the file's own firmware spec is bad
                text = str(exc)
                if not text.startswith(sc.source):
                    text = f"{sc.source}: firmware: {text}"
                bad.append(BadFile(sc.source, text))
                print(f"posharness: {text}", file=sys.stderr)
            ticker.update(done, "scenarios")
    finally:
        ticker.close()
    return results


def cmd_run(args: argparse.Namespace) -> int:
    if args.firmware:
        load_firmware(args.firmware)  # fail fast with exit 2 on a bad spec
    bad: list[BadFile] = []
    scenarios = _load_all(args.paths or [str(default_suite())], bad)
    if not scenarios and not bad:
        raise UsageError(f"no scenario files (*.toml) under {' '.join(args.paths)}")
    trace_dir = Path(args.trace_dir) if args.trace_dir else None
    report_dir = Path(args.report) if args.report else None
    if report_dir is not None and trace_dir is None:
        trace_dir = report_dir  # an HTML report is rendered from the trace
    run: Callable[..., RunResult] = run_scenario
    if args.transport == "mqtt":
        run = _mqtt_runner(args.time_scale)
    elif args.transport == "tcp":
        run = _tcp_runner(args.time_scale)
    if args.check_determinism:
        run = functools.partial(run_twice, run=run)
    console = make_console()
    results = _run_all(scenarios, run, args, trace_dir, bad, console)
    results_table(results, console, bad)
    failure_details(results, console, bad)
    reports: dict[str, Path] = {}
    if report_dir is not None:
        from .htmlreport import write_report_dir

        reports = write_report_dir(results, report_dir)
        say(console, f"report: {report_dir / 'index.html'}")
    say(console, summary_line(results, bad))
    if args.junit:
        write_junit(results, Path(args.junit), bad, reports)
    if bad:
        return EXIT_USAGE
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def _mqtt_runner(time_scale: float) -> Callable[..., RunResult]:
    """`run_scenario` over a private mosquitto (exit 2 when it is not installed)."""
    from .mqtt.broker import SETUP_HINT, find_mosquitto
    from .mqtt.scenario_run import run_scenario_mqtt

    if find_mosquitto() is None:
        raise UsageError(f"--transport mqtt needs a broker: {SETUP_HINT}")
    if not time_scale > 0:
        raise UsageError(f"--time-scale must be > 0, got {time_scale}")
    return functools.partial(run_scenario_mqtt, time_scale=time_scale)


def _tcp_runner(time_scale: float) -> Callable[..., RunResult]:
    """`run_scenario` over a loopback TCP link (nothing to install)."""
    from .tcp.scenario_run import run_scenario_tcp

    if not time_scale > 0:
        raise UsageError(f"--time-scale must be > 0, got {time_scale}")
    return functools.partial(run_scenario_tcp, time_scale=time_scale)


def cmd_list(args: argparse.Namespace) -> int:
    import faults

    from .docgen import reference
    from .invariants import DESCRIPTIONS

    bad: list[BadFile] = []
    scenarios = _load_all(args.paths or [str(default_suite())], bad)
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
                    # Every key a scenario file may hold, with type, default, unit
                    # and meaning: the data behind docs/scenario-format.md.
                    "format": reference(),
                },
                indent=2,
            )
        )
        return EXIT_USAGE if bad else EXIT_OK
    console = make_console()
    from terminal.zoo import ZOO

    firmwares: list[tuple[str, ...]] = [("reference", "prevents all five field failures")]
    for name, cls in ZOO.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        firmwares.append((f"zoo:{name}", doc[0] if doc else ""))
    sections: list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]] = [
        (
            "scenarios",
            ("name", "file", "description"),
            [(s.name, s.source, s.description) for s in scenarios],
        ),
        ("firmwares", ("spec", "what it models"), firmwares),
        (
            "fault kinds",
            ("kind", "layer", "what it does"),
            [(k, faults.REGISTRY[k].LAYER, faults.REGISTRY[k].SUMMARY) for k in kinds],
        ),
        ("invariants", ("name", "what it checks"), [(n, DESCRIPTIONS[n]) for n in INVARIANT_NAMES]),
    ]
    for title, headers, rows in sections:
        # Names and paths never wrap (they are copied); the last column is prose.
        columns = [Column(h, wraps=i == len(headers) - 1) for i, h in enumerate(headers)]
        blocks = [[" ".join(row[:-1]), row[-1]] for row in rows]
        print_table(console, title, columns, list(rows), blocks)
    for b in bad:
        say(console, f"ERROR {b.message}")
    return EXIT_USAGE if bad else EXIT_OK


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import PROFILES, open_database, parse_shard

    if args.budget is not None and args.budget <= 0:
        raise UsageError("--budget must be > 0 seconds")
    if args.examples is not None and args.examples <= 0:
        raise UsageError("--examples must be > 0")
    if args.profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}")
    if args.jobs < 0:
        raise UsageError("--jobs must be >= 0 (0: one per core)")
    load_firmware(args.firmware)  # a bad spec is one line before any process starts
    shard = parse_shard(args.shard)
    prof = PROFILES[args.profile]
    # A named database (--db) is used with every profile; without one, `ci` runs
    # without a database (the same examples everywhere) and the others keep
    # Hypothesis's local directory.
    database = open_database(args.db) if args.db or not prof.derandomize else None
    budget = args.budget
    if args.examples is None and budget is None:
        budget = prof.budget_s
    console = make_console()
    found, stats = _fuzz_campaign(args, console, shard, database, budget)
    summary = (
        f"{plural(stats.examples, 'example')}, {plural(stats.purchases, 'purchase')} "
        f"simulated, {plural(len(stats.kinds), 'fault kind')} exercised, "
        f"{stats.rate():.0f} examples/s"
    )
    if found is None:
        say(console, f"no violation found: {summary}")
        return EXIT_OK
    _say_found(console, args, found)
    return EXIT_FAILED


def _fuzz_campaign(
    args: argparse.Namespace,
    console: Console,
    shard: tuple[int, int],
    database: ExampleDatabase | None,
    budget: float | None,
) -> tuple[Found | None, Stats]:
    """Run the campaign (in `--jobs` processes or this one) with progress."""
    from .fuzz import campaign
    from .fuzz_jobs import jobs_for, run_jobs

    ticker = Ticker(
        console,
        f"fuzz {args.firmware}",
        total=args.examples,
        budget_s=None if args.examples is not None else budget,
        interval_s=FUZZ_PROGRESS_S,
    )

    def progress(stats: Stats) -> None:
        found = (
            f"; violation at example {stats.first_failure_example}, shrinking"
            if stats.first_failure_example
            else ""
        )
        ticker.update(
            stats.examples,
            f"examples ({stats.rate():.0f}/s), {plural(stats.purchases, 'purchase')}, "
            f"{plural(len(stats.kinds), 'fault kind')}, "
            f"{plural(len(stats.behaviours), 'distinct transition')}{found}",
        )

    common: dict[str, Any] = {
        "examples": args.examples,
        "budget_s": budget if args.examples is None else None,
        "campaign_seed": args.seed,
        "out_dir": Path(args.out),
        "profile": args.profile,
        "shard": shard,
        "on_progress": progress,
    }
    jobs = jobs_for(args.jobs)
    try:
        if jobs > 1:
            return run_jobs(
                args.firmware, jobs, db_url=args.db, started_s=time.perf_counter(), **common
            )
        return campaign(args.firmware, database=database, **common)
    finally:
        ticker.close()


def _say_found(console: Console, args: argparse.Namespace, found: Found) -> None:
    """The violation: what broke, the timeline, the files, how to reproduce."""
    from .fuzz import timeline

    sc = found.scenario
    say(
        console,
        f"VIOLATION {found.invariant} found at example {found.detect_example} "
        f"({found.detect_s:.1f} s), shrunk in {found.elapsed_s - found.detect_s:.1f} s "
        f"to {plural(sc.purchases(), 'purchase')} and {plural(len(sc.faults), 'fault')}:",
    )
    say(console, f"  {found.explanation}")
    if found.result.trace_path is not None:
        for line in timeline(found.result.trace_path):
            say(console, f"  {line}")
    say(console, f"  scenario: {found.path}")
    if found.result.trace_path is not None:
        say(console, f"  trace: {found.result.trace_path}")
        if args.report:
            from .htmlreport import write_report_dir

            # The report's reproduce command names the written scenario file.
            found.result.scenario = dataclasses.replace(sc, source=str(found.path))
            write_report_dir([found.result], Path(args.report))
            say(console, f"  report: {Path(args.report) / 'index.html'}")
    say(
        console,
        f"  reproduce: posharness run {shlex.quote(str(found.path))} "
        f"--firmware {shlex.quote(args.firmware)}",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="posharness", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=f"posharness {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser(
        "run",
        help="run scenario files or directories and judge them",
        description=RUN_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
    )
    r.add_argument(
        "paths",
        nargs="*",
        help="scenario files or directories (default: ./scenarios/, else the scenarios "
        "shipped with posharness)",
    )
    r.add_argument(
        "--firmware",
        help="reference | zoo:NAME | module:Class | file.py:Class | 'exec:COMMAND ARGS' "
        "(default: each file's own firmware); "
        "a recorded incident run with another firmware is judged FIXED or STILL FAILING",
    )
    r.add_argument("--seed", type=int, help="override every scenario's seed (default: the file's)")
    r.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    r.add_argument("--trace-dir", metavar="DIR", help="write one JSON-lines trace per scenario")
    r.add_argument(
        "--check-determinism",
        action="store_true",
        help="run each scenario twice and fail it where the traces differ, naming the "
        "first firmware answer that differs (for exec: and module:Class firmwares)",
    )
    r.add_argument(
        "--report",
        metavar="DIR",
        help="write DIR/index.html (every run with its verdict) and one page per run",
    )
    r.add_argument(
        "--transport",
        choices=("sim", "mqtt", "tcp"),
        default="sim",
        help="sim (virtual time, default) | mqtt (real broker, scaled real time) | "
        "tcp (ISO 8583 frames over a loopback TCP link, scaled real time)",
    )
    r.add_argument(
        "--time-scale",
        type=float,
        default=50.0,
        metavar="X",
        help="mqtt and tcp: run time per wall time (default 50: a 15 s timeout takes 0.3 s)",
    )
    r.set_defaults(func=cmd_run)
    fz = sub.add_parser(
        "fuzz",
        help="fuzz a firmware; shrink any violation to a scenario file",
        epilog="exit status:\n  0  no violation found;  1  a violation was found, shrunk and "
        "written;\n  2  bad usage",
    )
    fz.add_argument(
        "--firmware",
        default="reference",
        help="reference | zoo:NAME | module:Class | file.py:Class | 'exec:COMMAND ARGS'",
    )
    limit = fz.add_mutually_exclusive_group()
    limit.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="stop after this much wall time (without it, the profile's budget: ci 30, "
        "dev 120, deep 3600); a campaign always stops at the first violation",
    )
    limit.add_argument(
        "--examples",
        type=int,
        metavar="N",
        help="stop after N examples instead of a time budget",
    )
    fz.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    fz.add_argument("--out", default="fuzz-out", metavar="DIR", help="where shrunk scenarios go")
    fz.add_argument(
        "--profile",
        default="ci",
        help="ci (30 s, no example database unless --db names one) | "
        "dev (120 s, the local database .hypothesis/posharness) | deep (1 h)",
    )
    fz.add_argument(
        "--shard",
        metavar="I/N",
        help="run shard I of N, I counted from 0 (0/4 ... 3/4); shards never overlap "
        "(default: 0/1, the whole campaign)",
    )
    fz.add_argument(
        "--db",
        metavar="URL",
        help="example database, with any profile: redis://HOST:PORT/N or a directory; "
        "failures found are stored there and replayed first by the next campaign",
    )
    fz.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N local shards in parallel, one process each, sharing the example "
        "database; 0: one per core (default: 1)",
    )
    fz.add_argument("--report", metavar="DIR", help="write an HTML report of the violation here")
    fz.set_defaults(func=cmd_fuzz)
    ls = sub.add_parser(
        "list",
        help="list scenarios, firmwares, fault kinds and invariants",
        epilog="exit status:\n  0  listed;  2  bad usage or a bad scenario file (the rest "
        "is still listed)",
    )
    ls.add_argument(
        "paths",
        nargs="*",
        help="scenario files or directories (default: ./scenarios/, else the scenarios "
        "shipped with posharness)",
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    from .cli_incident import register as register_incident
    from .conformance import register as register_conformance
    from .framecmd import register as register_frame
    from .mqtt.cli import register as register_mqtt

    register_incident(sub)
    register_mqtt(sub)
    register_conformance(sub)
    register_frame(sub)
    _add_external_firmware_flag(p)
    return p


def _add_external_firmware_flag(parser: argparse.ArgumentParser) -> None:
    """Every command that reads files gets `--allow-external-firmware` (files may
    otherwise name only reference and zoo:NAME; see runner.file_firmware)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_external_firmware_flag(child)
            return
    if parser.get_default("func") is not None:
        parser.add_argument(
            "--allow-external-firmware",
            action="store_true",
            help="let scenario, trace and log files name module:Class or file.py:Class "
            "firmwares (code they choose is imported and run: only for files you trust)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    allow_external_firmware(bool(getattr(args, "allow_external_firmware", False)))
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
