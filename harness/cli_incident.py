"""`posharness replay`, `show` and `incident` subcommands.

Exit codes follow harness.cli: 0 reproduced / fixed / imported; 1 diverged / not
fixed / the import could not reproduce the logged outcome; 2 bad usage or a bad
input file (one line naming the file and the line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from .runner import UsageError, load_firmware
from .runner import plural as _n
from .trace import TraceReadError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def _console() -> Console:
    from .report import make_console

    return make_console()


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _guard(fn: Command) -> Command:
    """Bad trace or log files become UsageError: one line, exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except TraceReadError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"{exc.filename or ''}: {exc.strerror or exc}") from None

    return run


def _existing(path: str) -> Path:
    p = Path(path)
    if p.exists() and not p.is_file():
        raise UsageError(f"{p}: not a regular file")
    if not p.is_file():
        raise UsageError(f"{p}: no such file")
    return p


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import before_after, replay

    trace = _existing(args.trace)
    if trace.suffix == ".toml":
        raise UsageError(
            f"{trace}: a scenario file, not a trace: run it with `posharness run {trace}` "
            f"(add --firmware X to judge another firmware; --trace-dir DIR writes a trace "
            "that replay reads)"
        )
    out = Path(args.trace_out) if args.trace_out else None
    console = _console()
    if args.firmware:
        load_firmware(args.firmware)  # a bad spec is exit 2 before any run
        ba = before_after(trace, args.firmware, out)
        table = Table(
            title=f"{ba.header.name}: before / after",
            box=box.SIMPLE_HEAVY if console.is_terminal else box.ASCII,
        )
        table.add_column("invariant")
        table.add_column("scenario expects")
        table.add_column(f"before ({ba.header.firmware})")
        table.add_column(f"after ({args.firmware})")
        for name, expectation, before, after in ba.rows():
            table.add_row(
                name,
                expectation,
                f"[red]{before}[/red]" if before != "holds" else before,
                f"[bold red]{after}[/bold red]" if after != "holds" else f"[green]{after}[/green]",
            )
        console.print(table)
        if ba.before.divergence is not None:
            _say(console, f"note: the recorded trace {ba.before.divergence.describe()}")
        if ba.after.crashes:
            _say(console, f"after: the firmware crashed {_times(ba.after.crashes)}")
        if ba.fixed:
            _say(console, f"FIXED: {args.firmware} holds every invariant the scenario names")
            return EXIT_OK
        broken = [n for n in ba.required if ba.after.violations.get(n)]
        _say(console, f"STILL FAILING: {args.firmware} violates {', '.join(broken) or '-'}")
        return EXIT_FAILED
    result = replay(trace, out)
    if result.divergence is None:
        _say(
            console,
            f"reproduced byte for byte: {trace} ({_n(result.result.events, 'event')}, "
            f"firmware {result.header.firmware}, seed {result.header.seed})",
        )
        return EXIT_OK
    _say(console, f"DIVERGED: {trace} {result.divergence.describe()}")
    if out is not None:
        _say(console, f"replay trace: {out}")
    return EXIT_FAILED


def cmd_show(args: argparse.Namespace) -> int:
    from .timeline import load, render

    trace = _existing(args.trace)
    if args.limit < 1:
        raise UsageError("--limit must be >= 1")
    diagram = load(trace, args.limit)
    if args.html:
        from .htmlreport import render_html

        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(diagram, str(trace)), encoding="utf-8")
        _say(_console(), f"wrote {out}")
        return EXIT_OK
    render(diagram, _console())
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from scenarios.model import ScenarioError

    from .incidents import terminals_in
    from .incidents.parse import parse_tz

    tlog, hlog = _existing(args.terminal_log), _existing(args.host_log)
    if args.firmware:
        load_firmware(args.firmware)
    tz = parse_tz(args.tz) if args.tz else None
    try:
        tids = [args.terminal] if args.terminal else terminals_in(tlog, hlog, tz, args.format)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    if len(tids) <= 1:
        return _import_one(args, tlog, hlog, out, tz, args.terminal)
    console = _console()
    _say(console, f"{tlog} interleaves {len(tids)} terminals: one scenario each")
    worst = EXIT_OK
    for tid in tids:
        name = f"{args.name or tlog.stem}-{tid}"
        try:
            out_tid = out.with_name(f"{out.stem}-{tid}{out.suffix}")
            code = _import_one(args, tlog, hlog, out_tid, tz, tid, name)
        except UsageError as exc:
            print(f"posharness: {tid}: {exc}", file=sys.stderr)
            code = EXIT_USAGE
        worst = max(worst, code)
    return worst


def _import_one(
    args: argparse.Namespace,
    tlog: Path,
    hlog: Path,
    out: Path,
    tz: Any,
    terminal: str | None,
    name: str = "",
) -> int:
    """Import one terminal's incident from the pair of logs into `out`."""
    from scenarios.loader import load_scenario
    from scenarios.model import ScenarioError
    from scenarios.writer import scenario_to_toml

    from .incidents import import_logs

    try:
        imported = import_logs(
            tlog,
            hlog,
            firmware=args.firmware,
            name=name or args.name or "",
            description=args.description or "",
            tz=tz,
            fmt=args.format,
            terminal=terminal,
        )
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(scenario_to_toml(imported.scenario), encoding="utf-8")
    load_scenario(out)  # what we wrote must load; a ScenarioError here is our bug
    console = _console()
    sc = imported.scenario
    _say(
        console,
        f"wrote {out}: {_n(sc.purchases(), 'purchase')}, {_n(len(sc.faults), 'fault')}, firmware "
        f"{sc.firmware}; host clock skew {imported.skew_ms:+d} ms, one-way latency "
        f"{imported.latency_ms} ms, jitter up to {imported.jitter_ms} ms (from "
        f"{imported.pairs} request/response pairs, offsets agree within "
        f"{imported.spread_ms} ms)",
    )
    for step in imported.clock_steps:
        _say(console, f"  clock step: {step}")
    if imported.logged_violations:
        _say(console, "the logs themselves show (judged before any replay):")
        for inv, findings in imported.logged_violations.items():
            _say(
                console,
                f"  {inv}: {findings[0]}"
                + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""),
            )
    else:
        _say(console, "the logs themselves show no invariant broken")
    for note in imported.notes:
        _say(console, f"  explained: {note}")
    for f in sc.faults:
        _say(console, f"  fault: {f.describe()}")
    _say(console, f"  replay violates: {', '.join(imported.violated) or 'nothing'}")
    unexplained = imported.problems + imported.unexplained
    if unexplained:
        _say(console, f"could not explain {_n(len(unexplained), 'item')}:")
        for item in unexplained:
            _say(console, f"  - {item}")
    if imported.mismatches:
        _say(console, "the replay does NOT reproduce the logged outcome:")
        for item in imported.mismatches:
            _say(console, f"  - {item}")
        return EXIT_FAILED
    _say(console, "the replay reproduces the logged outcome (displays, host decisions, receipts)")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .incidents import trace_to_logs
    from .replay import check_trace

    trace = _existing(args.trace)
    check_trace(trace)  # a bad line is exit 2 before anything is written
    trace_to_logs(trace, Path(args.terminal_log), Path(args.host_log), args.skew_ms)
    _say(
        _console(),
        f"wrote {args.terminal_log} and {args.host_log} (host clock {args.skew_ms:+d} ms)",
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `replay`, `show` and `incident` to the posharness parser."""
    rp = sub.add_parser("replay", help="re-run a trace: byte-identical check, or before/after")
    rp.add_argument("trace", help="a JSON-lines trace written by run --trace-dir")
    rp.add_argument("--firmware", help="run the same inputs and faults against this firmware")
    rp.add_argument("--trace-out", metavar="FILE", help="write the replay's trace here")
    rp.set_defaults(func=_guard(cmd_replay))

    sh = sub.add_parser("show", help="a trace as a sequence diagram (terminal or --html)")
    sh.add_argument("trace", help="a JSON-lines trace")
    sh.add_argument("--html", metavar="FILE", help="write one self-contained HTML page")
    sh.add_argument("--limit", type=int, default=400, metavar="N", help="rows shown (default 400)")
    sh.set_defaults(func=_guard(cmd_show))

    inc = sub.add_parser("incident", help="turn incident logs into scenarios, and back")
    isub = inc.add_subparsers(dest="incident_command", required=True)
    im = isub.add_parser("import", help="terminal log + host log -> a replayable scenario")
    im.add_argument("terminal_log")
    im.add_argument("host_log")
    im.add_argument("--out", required=True, metavar="FILE", help="scenario TOML to write")
    im.add_argument("--firmware", help="the firmware that ran (default: the log header's)")
    im.add_argument("--name", help="scenario name (default: the terminal log's file name)")
    im.add_argument(
        "--terminal",
        metavar="TID",
        help="import only this terminal of a log that interleaves several "
        "(default: each, into OUT-TID.toml)",
    )
    im.add_argument("--description", help="scenario description")
    im.add_argument(
        "--format",
        default="jsonl",
        help="log format of both files: jsonl (default) or csv (docs/incident-logs.md)",
    )
    im.add_argument(
        "--tz",
        metavar="ZONE",
        help="time zone of log times without a UTC offset (Europe/Berlin, +01:00)",
    )
    im.set_defaults(func=_guard(cmd_import))
    ex = isub.add_parser("export", help="a trace -> a terminal log and a host log")
    ex.add_argument("trace")
    ex.add_argument("--terminal-log", required=True, metavar="FILE")
    ex.add_argument("--host-log", required=True, metavar="FILE")
    ex.add_argument("--skew-ms", type=int, default=0, help="host clock ahead by this much")
    ex.set_defaults(func=_guard(cmd_export))
