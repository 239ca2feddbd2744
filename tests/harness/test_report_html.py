"""The HTML report: linked and highlighted violation rows, legend, fault plan,
reproduce command, the index of a `--report DIR` run, and what a browser shows."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main
from harness.htmlreport import write_html_report
from harness.runner import run_scenario
from harness.timeline import load, render
from scenarios.loader import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DUP = ROOT / "scenarios" / "incidents" / "dup-response-lost-retry.toml"
CHROMIUM = "/usr/bin/chromium"
# The background of a violating row (tr.violating td in harness/htmlreport.py).
HIGHLIGHT_RGB = (0xFE, 0xE2, 0xE2)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    out = tmp_path / "dup.jsonl"
    run_scenario(load_scenario(DUP), "zoo:naive-retry", trace_path=out)
    return out


def _cited(trace: Path) -> set[int]:
    return load(trace).violating


def test_violation_trace_lines_link_to_highlighted_rows(trace: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    write_html_report(trace, page, reproduce="posharness run x.toml --firmware zoo:naive-retry")
    html = page.read_text()
    cited = _cited(trace)
    assert {4, 14, 22} <= cited
    for seq in cited:
        assert f'<a href="#seq-{seq}">{seq}</a>' in html
        assert f'<tr id="seq-{seq}" class="violating">' in html
    highlighted = {int(s) for s in re.findall(r'<tr id="seq-(\d+)" class="violating">', html)}
    assert highlighted == cited  # no other row is highlighted


def test_page_has_legend_fault_plan_and_reproduce_commands(trace: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    write_html_report(trace, page, reproduce="posharness run x.toml --firmware zoo:naive-retry")
    html = page.read_text()
    assert 'id="legend"' in html and "a trace line a violated invariant cites" in html
    assert "faults[0] drop(nth=1, direction=to_terminal, mti=0210): applied once" in html
    assert "posharness run x.toml --firmware zoo:naive-retry" in html
    assert f"posharness replay {trace}" in html


def test_report_dir_writes_an_index_of_every_run_with_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    incidents = ROOT / "scenarios" / "incidents"
    code = main(
        [
            "run",
            str(DUP),
            str(incidents / "fault-drop.toml"),
            "--firmware",
            "zoo:naive-retry",
            "--report",
            str(report),
        ]
    )
    assert code == 1
    assert f"report: {report / 'index.html'}" in capsys.readouterr().out
    index = (report / "index.html").read_text()
    verdicts = re.findall(r'<tr data-verdict="([^"]+)"><td><a href="([^"]+)">([^<]+)</a>', index)
    assert sorted((v, name) for v, _, name in verdicts) == [
        ("FAIL", "dup-response-lost-retry"),
        ("PASS", "fault-drop"),
    ]
    for _, href, _ in verdicts:
        assert (report / href).is_file()
    assert verdicts[0][0] == "FAIL"  # failures first


def test_show_in_a_terminal_highlights_and_marks_violating_rows(trace: Path) -> None:
    console = Console(width=220, force_terminal=True, color_system="truecolor", record=True)
    render(load(trace), console)
    styled = console.export_text(styles=True, clear=False)
    plain = console.export_text()
    for seq in (4, 14, 22):
        assert re.search(rf"^\s*!{seq}\s", plain, re.M), seq
    assert "48;2;74;16;16" in styled  # the row background (VIOLATING_ROW_STYLE)
    assert "fault plan:" in plain and "applied once" in plain


def _png_rows(path: Path) -> list[bytes]:
    """The pixel rows of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return [bytes(r) for r in rows] if bpp == 3 else [_rgb(r) for r in rows]


def _rgb(rgba: bytes) -> bytes:
    return b"".join(rgba[i : i + 3] for i in range(0, len(rgba), 4))


def _highlight_bands(rows: list[bytes]) -> int:
    """How many separate horizontal bands of the highlight colour the image has."""
    needle = bytes(HIGHLIGHT_RGB) * 20  # 20 highlighted pixels side by side
    bands, inside = 0, False
    for row in rows:
        hit = needle in row
        if hit and not inside:
            bands += 1
        inside = hit
    return bands


def test_headless_chromium_screenshot_shows_each_violating_row_highlighted(
    trace: Path, tmp_path: Path
) -> None:
    """The page as a browser draws it: the legend's sample row plus one highlighted
    band per violating row of the diagram, and nothing else in that colour."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed: scripts/setup-browser installs it (needs root)")
    page = tmp_path / "p.html"
    write_html_report(trace, page, reproduce="posharness run x.toml")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,5000",
            # Half the pixels each way: a quarter of the decoding work in pure Python.
            "--force-device-scale-factor=0.5",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    rows = _png_rows(shot)
    assert len(rows) >= 2500
    cited = _cited(trace)
    # Adjacent cited rows would merge into one band; this trace's are apart.
    assert sorted(cited) == [4, 14, 22, 26, 55]
    assert _highlight_bands(rows) == 1 + len(cited)


def test_show_at_80_columns_prints_one_line_per_row_without_splitting_words(
    trace: Path,
) -> None:
    console = Console(width=80, force_terminal=True, record=True)
    render(load(trace), console)
    lines = console.export_text().splitlines()
    assert any(re.match(r"^\s*!14\s+\d+\.\d{3}\s+\w+\s", line) for line in lines)
    # Each row's whole text is on one line (the terminal may fold it; we do not).
    assert any("0200 stan 1 12.50 ──▶" in line for line in lines)
    assert not any(line.startswith("|") or line.startswith("+") for line in lines)
