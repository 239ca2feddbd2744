"""One self-contained HTML page for a trace: the violated invariants (their trace
lines link to the diagram's rows, which are highlighted), the fault plan, how to
reproduce the run, a legend, the sequence diagram, the host's ledger and the
receipts. `write_report_dir` writes one page per run and an index.html listing
every run with its verdict.

No network is needed to view it: CSS is inline, there are no scripts, fonts or
images. Everything that comes from the trace is escaped (trace text is untrusted:
a firmware or a scenario can put anything in a display text or a name).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .timeline import ROWS_MAX_DEFAULT, Diagram, _money, load, violation_summaries

if TYPE_CHECKING:
    from .runner import RunResult

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; vertical-align: top; }
th { background: #f3f3f3; }
table.diagram td.lane { width: 18%; }
table.diagram td.seq, table.diagram td.t { color: #888; text-align: right; }
.right { color: #075985; } .right::after { content: ""; }
.left { color: #86198f; }
.fault, .lost { color: #fff; background: #b91c1c; font-weight: bold; }
.bad { color: #b91c1c; font-weight: bold; }
.approved { color: #166534; } .declined { color: #a16207; }
.failed { color: #a16207; font-weight: bold; } .pending { color: #1d4ed8; }
.dim { color: #999; }
.ok { color: #166534; }
li.violation { color: #b91c1c; margin-bottom: 0.3em; }
tr.violating td { background: #fee2e2; }
tr.violating td.seq { color: #b91c1c; font-weight: bold; border-left: 4px solid #b91c1c; }
tr:target td { outline: 2px solid #b91c1c; }
a { color: inherit; }
/* Commands never wrap: a copy is always the whole command. */
pre.cmd { background: #f3f3f3; padding: 0.4em 0.6em; white-space: pre; overflow-x: auto; }
table.legend td { border: none; padding: 1px 8px; }
.verdict-PASS, .verdict-FIXED { color: #166534; font-weight: bold; }
.verdict-FAIL, .verdict-STILL { color: #b91c1c; font-weight: bold; }
"""

# What each style in the diagram means (the legend on the page).
LEGEND: tuple[tuple[str, str, str], ...] = (
    ("violating", "row", "a trace line a violated invariant cites"),
    ("right", "0200 ──▶", "a message to the host"),
    ("left", "◀── 0210", "a message to the terminal"),
    ("fault", "⚡ FAULT", "a fault of the plan applied here"),
    ("lost", "✗ LOST", "a message that never arrived"),
    ("approved", "APPROVED", "approved display or receipt printed"),
    ("declined", "DECLINED", "declined display"),
    ("failed", "FAILED", "failed display"),
    ("pending", "PENDING", "pending display or receipt"),
    ("bad", "POWER OFF", "power cut, host down, crash, failed print"),
    ("dim", "journal", "bookkeeping"),
)


def _row(cells: tuple[Any, ...]) -> str:
    return "<tr>" + "".join(_cell(x) for x in cells) + "</tr>"


def _cell(text: Any) -> str:
    return f"<td>{escape(str(text))}</td>"


def _seq_links(seqs: str) -> str:
    """ "4, 14" -> links to the rows #seq-4 and #seq-14 (anything else stays text)."""
    parts = []
    for part in seqs.split(", "):
        if part.isdigit():
            parts.append(f'<a href="#seq-{part}">{part}</a>')
        else:
            parts.append(escape(part))
    return ", ".join(parts)


def _plan_and_reproduce(d: Diagram, source: str, reproduce: str) -> list[str]:
    out = ['<h2>Fault plan</h2><ul id="plan">']
    if not d.plan:
        out.append("<li>no faults planned</li>")
    out.extend(f"<li><code>{escape(line)}</code></li>" for line in d.fault_plan())
    out.append("</ul>")
    commands = [reproduce] if reproduce else []
    if source:
        commands.append(f"posharness replay {shlex.quote(source)}")
        commands.append(f"posharness show {shlex.quote(source)}")
    if commands:
        out.append('<h2>Reproduce</h2><pre class="cmd" id="reproduce">')
        out.append("\n".join(escape(c) for c in commands) + "</pre>")
    return out


def _legend() -> list[str]:
    out = ['<h2>Legend</h2><table class="legend" id="legend">']
    for cls, sample, meaning in LEGEND:
        if cls == "violating":
            out.append(
                f'<tr class="violating"><td class="seq">{escape(sample)}</td>'
                f"<td>{escape(meaning)}</td></tr>"
            )
        else:
            out.append(
                f'<tr><td class="{cls}">{escape(sample)}</td><td>{escape(meaning)}</td></tr>'
            )
    out.append("</table>")
    return out


def render_html(d: Diagram, source: str = "", reproduce: str = "") -> str:
    """The page for diagram `d` of the trace at `source`; `reproduce` is the command
    that re-runs it (shown first under "Reproduce")."""
    title = f"posharness: {d.name}"
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p id="run">firmware <code>{escape(d.firmware)}</code> · seed {d.seed}'
        + (f" · trace <code>{escape(source)}</code>" if source else "")
        + "</p>",
    ]
    # Violations first: they are what the reader came for.
    out.append('<h2>Violated invariants</h2><ul id="violations">')
    if not d.violations:
        out.append('<li class="ok">none: every invariant held</li>')
    for v in violation_summaries(d):
        out.append(
            f'<li class="violation" data-invariant="{escape(v.invariant)}">'
            f"<b>{escape(v.invariant)}</b> ({escape(v.count)}x): {escape(v.message)} "
            f"<span class=dim>(trace lines {_seq_links(v.seqs)})</span></li>"
        )
    out.append("</ul>")
    out.extend(_plan_and_reproduce(d, source, reproduce))
    out.extend(_legend())

    out.append('<h2>Sequence diagram</h2><table class="diagram" id="diagram">')
    out.append(
        "<tr><th>seq</th><th>t (s)</th>"
        + "".join(f"<th>{escape(lane)}</th>" for lane in d.lanes)
        + "</tr>"
    )
    for r in d.rows:
        cells = []
        for lane in d.lanes:
            if lane == r.lane:
                cells.append(
                    f'<td class="lane {escape(r.style)}" data-kind="{escape(r.style)}">'
                    f"{escape(r.text)}</td>"
                )
            else:
                cells.append('<td class="lane"></td>')
        cited = ' class="violating"' if r.seq in d.violating else ""
        out.append(
            f'<tr id="seq-{r.seq}"{cited}><td class="seq">{r.seq}</td>'
            f'<td class="t">{r.t_ms / 1000:.3f}</td>{"".join(cells)}</tr>'
        )
    out.append("</table>")
    if d.total_rows > len(d.rows):
        out.append(f"<p class=dim>{d.total_rows - len(d.rows)} more rows not shown.</p>")

    out.append('<h2>Ledger (host decisions)</h2><table id="ledger">')
    out.append(
        "<tr><th>seq</th><th>mti</th><th>stan</th><th>action</th><th>rc</th>"
        "<th>amount</th><th>rrn</th><th>detail</th></tr>"
    )
    for h in d.ledger:
        out.append(
            _row(
                (
                    h.get("seq", ""),
                    h.get("mti", ""),
                    h.get("stan", ""),
                    h.get("action", ""),
                    h.get("rc", ""),
                    _money(h["amount"]) if h.get("amount") else "",
                    h.get("rrn", ""),
                    h.get("detail", ""),
                )
            )
        )
    out.append("</table>")

    out.append('<h2>Receipts</h2><table id="receipts">')
    out.append(
        "<tr><th>seq</th><th>job</th><th>print</th><th>receipt</th><th>amount</th>"
        "<th>rrn</th><th>stan</th><th>card</th><th>copy</th></tr>"
    )
    for p in d.receipts:
        raw = p.get("receipt", {})
        rcpt: dict[str, Any] = raw if isinstance(raw, dict) else {}
        out.append(
            _row(
                (
                    p.get("seq", ""),
                    p.get("job", ""),
                    p.get("status", ""),
                    rcpt.get("status", ""),
                    _money(rcpt.get("amount", 0)),
                    rcpt.get("rrn", ""),
                    rcpt.get("stan", ""),
                    f"…{rcpt.get('pan_last4', '')}",
                    "yes" if rcpt.get("copy") else "",
                )
            )
        )
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


def write_html_report(
    trace_path: Path, out_path: Path, limit: int = ROWS_MAX_DEFAULT, reproduce: str = ""
) -> None:
    """Write the HTML report of the trace at `trace_path` to `out_path`.
    Raises harness.trace.TraceReadError on a bad trace."""
    diagram = load(trace_path, limit)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_html(diagram, str(trace_path), reproduce), encoding="utf-8")


def write_report_dir(results: Sequence[RunResult], report_dir: Path) -> dict[str, Path]:
    """One page per run that has a trace, and `report_dir/index.html` listing every
    run with its verdict (failures first). Returns scenario source -> page."""
    from .report import reproduce_command

    pages: dict[str, Path] = {}
    rows: list[tuple[int, str]] = []
    for r in results:
        page: Path | None = None
        if r.trace_path is not None:
            page = report_dir / (r.trace_path.stem + ".html")
            write_html_report(r.trace_path, page, reproduce=reproduce_command(r))
            pages[r.scenario.source] = page
        name = escape(r.scenario.name)
        link = f'<a href="{escape(page.name)}">{name}</a>' if page is not None else name
        verdict_class = "verdict-" + r.verdict.split()[0]
        violated = escape(", ".join(r.violated()) or "-")
        rows.append(
            (
                0 if not r.passed else 1,
                f'<tr data-verdict="{escape(r.verdict)}"><td>{link}</td>'
                f"<td><code>{escape(r.firmware)}</code></td>"
                f'<td class="{verdict_class}">{escape(r.verdict)}</td><td>{violated}</td>'
                f"<td><code>{escape(r.scenario.source)}</code></td></tr>",
            )
        )
    rows.sort(key=lambda row: row[0])  # stable: failures first, then run order
    failed = sum(1 for r in results if not r.passed)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>posharness report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>posharness report</h1>",
        f'<p id="summary">{len(results)} runs, {failed} not passing.</p>',
        '<table id="runs"><tr><th>scenario</th><th>firmware</th><th>verdict</th>'
        "<th>violated invariants</th><th>file</th></tr>",
        *(row for _, row in rows),
        "</table></body></html>",
    ]
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "index.html").write_text("\n".join(out) + "\n", encoding="utf-8")
    return pages
