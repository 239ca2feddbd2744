"""The sequence diagram (rich) and the self-contained HTML report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main
from harness.htmlreport import write_html_report
from harness.timeline import build, load, render
from harness.trace import read_trace

CHROMIUM = "/usr/bin/chromium"


def _text(trace: Path, limit: int = 400) -> str:
    console = Console(record=True, width=200, no_color=True)
    render(load(trace, limit), console)
    return console.export_text()


def test_diagram_has_lanes_messages_faults_and_violations(naive_retry_trace: Path) -> None:
    text = _text(naive_retry_trace)
    for lane in ("people", "terminal", "network", "host", "printer"):
        assert lane in text
    assert "0200 stan 1 12.50 ──▶" in text
    assert "◀── 0210 stan 1 12.50 rc 00" in text
    assert "⚡ FAULT drop" in text
    assert "shows APPROVED" in text and "receipt APPROVED 12.50" in text
    assert "violated invariants:" in text and "no-duplicate-charge (1x)" in text


def test_diagram_is_bounded_by_the_limit(naive_retry_trace: Path) -> None:
    d = load(naive_retry_trace, 10)
    assert len(d.rows) == 10 and d.total_rows > 10
    assert "more rows not shown" in _text(naive_retry_trace, 10)


def test_lost_messages_are_marked(tmp_path: Path) -> None:
    from .conftest import record

    trace = record(tmp_path, "scenarios/incidents/fault-host_crash.toml")
    d = build(read_trace(trace))
    assert any(r.style == "lost" for r in d.rows) or any("HOST DOWN" in r.text for r in d.rows)


def test_show_cli(naive_retry_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(naive_retry_trace), "--limit", "5"]) == 0
    assert "more rows not shown" in capsys.readouterr().out
    assert main(["show", str(naive_retry_trace), "--limit", "0"]) == 2


def _hostile_trace(naive_retry_trace: Path, tmp_path: Path) -> Path:
    """The trace with markup injected into a display text."""
    out = tmp_path / "hostile.jsonl"
    lines = []
    for line in naive_retry_trace.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "display" and rec.get("text") == "PROCESSING":
            rec["text"] = "<script>alert(1)</script><img src=x>"
        lines.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n")
    return out


def test_html_is_self_contained_and_escaped(naive_retry_trace: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_html_report(_hostile_trace(naive_retry_trace, tmp_path), page)
    html = page.read_text()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for external in ("http://", "https://", "@import", "<link", "url("):
        assert external not in html
    assert 'id="diagram"' in html and 'id="ledger"' in html and 'id="receipts"' in html


def test_html_in_headless_chromium_shows_the_diagram_and_each_violation(
    naive_retry_trace: Path, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed: scripts/setup installs it (apt-get install chromium)")
    page = tmp_path / "report.html"
    assert main(["show", str(naive_retry_trace), "--html", str(page)]) == 0
    violated = [
        json.loads(line)["invariant"]
        for line in naive_retry_trace.read_text().splitlines()
        if '"kind":"violation"' in line
    ]
    assert len(violated) == 3
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '<table class="diagram" id="diagram">' in dom
    assert "⚡ FAULT drop" in dom and "0200 stan 1 12.50 ──▶" in dom
    for name in violated:
        assert f'<li class="violation" data-invariant="{name}">' in dom
    assert "charge" in dom and "000000000002" in dom  # the ledger
    shutil.rmtree(profile, ignore_errors=True)
