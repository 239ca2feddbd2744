"""Reports: the results table, failure details and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from .runner import RunResult


def fmt_sim(ms: int) -> str:
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def results_table(results: Sequence[RunResult], console: Console) -> None:
    table = Table(
        title="posharness run",
        box=box.SIMPLE_HEAVY if console.is_terminal else box.ASCII,
        show_lines=False,
    )
    table.add_column("scenario", overflow="fold")
    table.add_column("firmware")
    table.add_column("verdict")
    table.add_column("violated invariants", overflow="fold")
    table.add_column("simulated", justify="right")
    table.add_column("wall", justify="right")
    for r in results:
        verdict = "[green]PASS[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        violated = ", ".join(r.violated()) or "-"
        table.add_row(
            r.scenario.name,
            r.firmware,
            verdict,
            violated,
            fmt_sim(r.sim_ms),
            f"{r.wall_s * 1000:.0f} ms",
        )
    console.print(table)


def failure_details(results: Sequence[RunResult], console: Console) -> None:
    for r in results:
        if r.passed:
            continue
        console.print(
            f"[bold red]FAIL[/bold red] {r.scenario.name} ({r.scenario.source}) with {r.firmware}"
        )
        for problem in r.problems:
            vs = r.violations.get(problem, [])
            if not vs:
                console.print(f"  - {problem}", markup=False)
                continue
            for v in vs[:3]:
                lines = ", ".join(str(s) for s in v.seqs) or "-"
                console.print(f"  - {v.invariant}: {v.message} (trace lines {lines})", markup=False)
            if len(vs) > 3:
                console.print(f"    ... and {len(vs) - 3} more {problem} violations", markup=False)
        where = f" --trace-dir {r.trace_path.parent}" if r.trace_path else " --trace-dir traces"
        console.print(
            f"  reproduce: posharness run {r.scenario.source} --firmware {r.firmware} "
            f"--seed {r.seed}{where}",
            markup=False,
        )
        if r.trace_path:
            console.print(f"  trace: {r.trace_path}", markup=False)
            console.print(f"  timeline: posharness show {r.trace_path}", markup=False)


def write_junit(results: Sequence[RunResult], path: Path) -> None:
    suite = ET.Element(
        "testsuite",
        name="posharness",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed)),
        time=f"{sum(r.wall_s for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"posharness.{r.firmware}",
            name=r.scenario.name,
            time=f"{r.wall_s:.3f}",
        )
        if not r.passed:
            lines: list[str] = []
            for problem in r.problems:
                vs = r.violations.get(problem, [])
                lines.extend(f"{v.invariant}: {v.message} (trace lines {list(v.seqs)})" for v in vs)
                if not vs:
                    lines.append(problem)
            fail = ET.SubElement(case, "failure", message="; ".join(r.problems)[:500])
            fail.text = "\n".join(lines)
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="seed", value=str(r.seed))
        ET.SubElement(props, "property", name="simulated_ms", value=str(r.sim_ms))
        ET.SubElement(props, "property", name="source", value=r.scenario.source)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
