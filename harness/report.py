"""Reports: the console, the results table, failure details and JUnit XML.

Output rules, for people and for the tools that read CI logs:

* Piped (not a terminal): plain text, no colours, ASCII tables 160 columns wide at
  most; only prose inside a table wraps, no other line is ever wrapped.
* On a terminal: rich colours and tables. A table that cannot fit the terminal
  without splitting words is printed as one block of lines per row instead.
* Machine-readable lines (paths, reproduce commands) are printed outside tables
  with soft wrapping, so the terminal may fold them on screen but a copy and paste
  gives the whole line.
"""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .runner import RunResult, plural

# Piped tables are at most this wide (CI log viewers); lines outside tables never wrap.
PLAIN_WIDTH = 160
# At most this many violations of one invariant are spelled out per scenario.
VIOLATIONS_SHOWN_MAX = 3

VERDICT_STYLE = {
    "PASS": "green",
    "SKIP": "yellow",
    "FIXED": "bold green",
    "FAIL": "bold red",
    "STILL FAILING": "bold red",
    "ERROR": "bold magenta",
}


def make_console() -> Console:
    """Rich on a terminal; plain, unwrapped text when piped."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(
        no_color=True,
        width=PLAIN_WIDTH,
        soft_wrap=True,
        highlight=False,
        emoji=False,
        color_system=None,
    )


def say(console: Console, text: str | Text) -> None:
    """One line, never hard-wrapped (markup in `text` is not interpreted)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    wraps: bool = False  # prose that may wrap between words; names and paths never do
    justify: Literal["left", "right"] = "left"


# Widest a wrapping column may get squeezed to before a table gives way to blocks.
WRAP_WIDTH_MIN = 20


def print_table(
    console: Console,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    blocks: Sequence[Sequence[str | Text]],
) -> None:
    """One table style for every command: ASCII when piped, light on a terminal.
    When the table cannot fit the terminal without splitting a word or a name, it
    prints `blocks` (a few lines per row) instead."""
    widths = []
    for i, col in enumerate(columns):
        cells: list[Text] = [Text(col.header)]
        cells.extend(Text(c) if isinstance(c, str) else c for c in (r[i] for r in rows))
        if col.wraps:
            longest = max((len(w) for c in cells for w in c.plain.split()), default=0)
            widths.append(max(WRAP_WIDTH_MIN, longest))
        else:
            widths.append(max(c.cell_len for c in cells))
    # One space of padding each side and one rule between columns.
    needed = sum(widths) + 3 * len(columns) + 1
    if needed > console.width:
        say(console, Text(title, style="bold"))
        for block in blocks:
            for i, line in enumerate(block):
                text = Text(line) if isinstance(line, str) else line
                say(console, Text("  ") + text if i else text)
        return
    table = Table(
        title=title or None,
        box=box.SIMPLE_HEAVY if console.is_terminal else box.ASCII,
        show_lines=False,
        expand=False,
    )
    for col in columns:
        table.add_column(
            col.header,
            justify=col.justify,
            no_wrap=not col.wraps,
            overflow="fold",
            min_width=WRAP_WIDTH_MIN if col.wraps else None,
        )
    for row in rows:
        table.add_row(*row)
    console.print(table)


def fmt_sim(ms: int) -> str:
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


@dataclass(frozen=True, slots=True)
class BadFile:
    """A scenario file that could not be loaded or run: reported, exit 2 at the end."""

    path: str
    message: str  # one line, naming the file, the key and the problem


def reproduce_command(r: RunResult) -> str:
    """The command that re-runs `r` exactly, quoted so that pasting it works."""
    where = str(r.trace_path.parent) if r.trace_path else "traces"
    return " ".join(
        [
            "posharness run",
            shlex.quote(r.scenario.source or r.scenario.name),
            "--firmware",
            shlex.quote(r.firmware),
            "--seed",
            str(r.seed),
            "--trace-dir",
            shlex.quote(where),
        ]
    )


def violation_lines(r: RunResult) -> list[str]:
    """What went wrong in `r`, one readable line each (no Python lists)."""
    lines: list[str] = []
    for problem in r.problems:
        vs = r.violations.get(problem, [])
        if not vs:
            lines.append(problem)
            continue
        for v in vs[:VIOLATIONS_SHOWN_MAX]:
            seqs = ", ".join(str(s) for s in v.seqs) or "-"
            lines.append(f"{v.invariant}: {v.message} (trace lines {seqs})")
        if len(vs) > VIOLATIONS_SHOWN_MAX:
            more = len(vs) - VIOLATIONS_SHOWN_MAX
            lines.append(f"... and {plural(more, 'more ' + problem + ' violation')}")
    return lines


def results_table(
    results: Sequence[RunResult], console: Console, bad: Sequence[BadFile] = ()
) -> None:
    columns = [
        Column("scenario"),
        Column("firmware"),
        Column("verdict"),
        # Invariant names are joined by ", " so that the column wraps between names.
        Column("violated invariants", wraps=True),
        Column("simulated", justify="right"),
        Column("wall", justify="right"),
    ]
    rows: list[list[str | Text]] = []
    blocks: list[list[str | Text]] = []
    for r in results:
        verdict = Text(r.verdict, style=VERDICT_STYLE[r.verdict])
        violated = ", ".join(r.violated()) or "-"
        sim, wall = fmt_sim(r.sim_ms), f"{r.wall_s * 1000:.0f} ms"
        rows.append([r.scenario.name, r.firmware, verdict, violated, sim, wall])
        blocks.append(
            [
                verdict + Text(f"  {r.scenario.name}"),
                f"firmware {r.firmware}, simulated {sim}, wall {wall}",
                f"violated: {violated}",
            ]
        )
    for b in bad:
        verdict = Text("ERROR", style=VERDICT_STYLE["ERROR"])
        rows.append([b.path, "-", verdict, "(file not run)", "-", "-"])
        blocks.append([verdict + Text(f"  {b.path}"), "file not run (see below)"])
    print_table(console, "posharness run", columns, rows, blocks)


def failure_details(
    results: Sequence[RunResult], console: Console, bad: Sequence[BadFile] = ()
) -> None:
    for r in results:
        for note in r.notes:
            say(console, f"note: {r.scenario.name}: {note}")
        if r.skipped:
            say(console, f"skipped: {r.scenario.name}: {r.skipped}")
        if r.passed:
            continue
        head = Text(r.verdict, style=VERDICT_STYLE[r.verdict])
        head.append(f" {r.scenario.name} ({r.scenario.source}) with {r.firmware}")
        say(console, head)
        if r.judged == "fixed":
            say(
                console,
                f"  judged fixed-or-not: {r.firmware} replaces {r.scenario.firmware}, "
                "so every invariant the file names must hold",
            )
        for line in violation_lines(r):
            say(console, f"  - {line}")
        say(console, f"  reproduce: {reproduce_command(r)}")
        if r.trace_path:
            say(console, f"  trace: {r.trace_path}")
            say(console, f"  timeline: posharness show {shlex.quote(str(r.trace_path))}")
    for b in bad:
        say(console, Text("ERROR ", style=VERDICT_STYLE["ERROR"]) + Text(b.message))


def summary_line(results: Sequence[RunResult], bad: Sequence[BadFile] = ()) -> str:
    """ "39 scenarios: 35 passed, 4 fixed, 0 failed (67 purchases, 0.14 s wall)"."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    parts = [f"{counts.get('PASS', 0)} passed"]
    if counts.get("FIXED"):
        parts.append(f"{counts['FIXED']} fixed")
    if counts.get("SKIP"):
        parts.append(f"{counts['SKIP']} skipped")
    if counts.get("STILL FAILING"):
        parts.append(f"{counts['STILL FAILING']} still failing")
    parts.append(f"{counts.get('FAIL', 0)} failed")
    if bad:
        parts.append(f"{plural(len(bad), 'bad file')} not run")
    purchases = sum(r.purchases for r in results)
    wall = sum(r.wall_s for r in results)
    return (
        f"{plural(len(results) + len(bad), 'scenario')}: {', '.join(parts)} "
        f"({plural(purchases, 'purchase')}, {wall:.2f} s wall)"
    )


def write_junit(
    results: Sequence[RunResult],
    path: Path,
    bad: Sequence[BadFile] = (),
    reports: dict[str, Path] | None = None,
) -> None:
    """JUnit XML: one testcase per scenario (failure for an unmet [expect]) and one
    per bad file (error). `reports` maps a scenario source to its HTML report."""
    reports = reports or {}
    suite = ET.Element(
        "testsuite",
        name="posharness",
        tests=str(len(results) + len(bad)),
        failures=str(sum(1 for r in results if not r.passed)),
        errors=str(len(bad)),
        skipped="0",
        time=f"{sum(r.wall_s for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"posharness.{r.firmware}",
            name=r.scenario.name,
            file=r.scenario.source,
            time=f"{r.wall_s:.3f}",
        )
        where = [f"reproduce: {reproduce_command(r)}"]
        if r.trace_path is not None:
            where.append(f"trace: {r.trace_path}")
        report = reports.get(r.scenario.source)
        if report is not None:
            where.append(f"report: {report}")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="verdict", value=r.verdict)
        ET.SubElement(props, "property", name="seed", value=str(r.seed))
        ET.SubElement(props, "property", name="simulated_ms", value=str(r.sim_ms))
        ET.SubElement(props, "property", name="source", value=r.scenario.source)
        ET.SubElement(props, "property", name="reproduce", value=reproduce_command(r))
        if r.trace_path is not None:
            ET.SubElement(props, "property", name="trace", value=str(r.trace_path))
        if report is not None:
            ET.SubElement(props, "property", name="report", value=str(report))
        if not r.passed:
            fail = ET.SubElement(
                case, "failure", type=r.verdict, message="; ".join(r.problems)[:500]
            )
            fail.text = "\n".join([*violation_lines(r), *where])
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([f"verdict: {r.verdict}", *r.notes, *where])
    for b in bad:
        case = ET.SubElement(
            suite, "testcase", classname="posharness.load", name=b.path, file=b.path, time="0"
        )
        err = ET.SubElement(case, "error", type="ScenarioError", message=b.message[:500])
        err.text = b.message
    ET.indent(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
