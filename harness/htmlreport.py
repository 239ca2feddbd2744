"""One self-contained HTML page for a trace: the sequence diagram, the violated
invariants, the host's ledger and the receipts.

No network is needed to view it: CSS is inline, there are no scripts, fonts or
images. Everything that comes from the trace is escaped (trace text is untrusted:
a firmware or a scenario can put anything in a display text or a name).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from .timeline import LANES, ROWS_MAX_DEFAULT, Diagram, _money, load, violation_summaries

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
"""


def _row(cells: tuple[Any, ...]) -> str:
    return "<tr>" + "".join(_cell(x) for x in cells) + "</tr>"


def _cell(text: Any) -> str:
    return f"<td>{escape(str(text))}</td>"


def render_html(d: Diagram, source: str = "") -> str:
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
            f"<span class=dim>(trace lines {escape(v.seqs)})</span></li>"
        )
    out.append("</ul>")

    out.append('<h2>Sequence diagram</h2><table class="diagram" id="diagram">')
    out.append(
        "<tr><th>seq</th><th>t (s)</th>"
        + "".join(f"<th>{escape(lane)}</th>" for lane in LANES)
        + "</tr>"
    )
    for r in d.rows:
        cells = []
        for lane in LANES:
            if lane == r.lane:
                cells.append(
                    f'<td class="lane {escape(r.style)}" data-kind="{escape(r.style)}">'
                    f"{escape(r.text)}</td>"
                )
            else:
                cells.append('<td class="lane"></td>')
        out.append(
            f'<tr id="seq-{r.seq}"><td class="seq">{r.seq}</td>'
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


def write_html_report(trace_path: Path, out_path: Path, limit: int = ROWS_MAX_DEFAULT) -> None:
    """Write the HTML report of the trace at `trace_path` to `out_path`.
    Raises harness.trace.TraceReadError on a bad trace."""
    diagram = load(trace_path, limit)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_html(diagram, str(trace_path)), encoding="utf-8")
