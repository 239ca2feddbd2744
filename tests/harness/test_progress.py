"""Long commands report progress: a plain line on stderr when piped, never on stdout."""

from __future__ import annotations

import io
import re

from rich.console import Console

from harness.progress import Ticker, clock


def test_clock_reads_like_a_person_would_say_it() -> None:
    assert clock(42.2) == "42 s"
    assert clock(185) == "3 min 05 s"
    assert clock(3720) == "1 h 02 min"


def test_piped_progress_prints_count_elapsed_and_remaining() -> None:
    stream = io.StringIO()
    console = Console(file=io.StringIO(), force_terminal=False)
    ticker = Ticker(console, "run", total=3, interval_s=0.0, stream=stream)
    ticker.update(1, "scenarios")
    ticker.update(2, "scenarios")
    ticker.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    pattern = r"run: 2/3 scenarios \(\d+ s elapsed, about \d+ s left\)"
    assert re.fullmatch(pattern, lines[1]), lines[1]


def test_a_budget_gives_the_remaining_time_and_an_interval_limits_the_lines() -> None:
    stream = io.StringIO()
    console = Console(file=io.StringIO(), force_terminal=False)
    ticker = Ticker(console, "fuzz", budget_s=3600, interval_s=3600, stream=stream)
    for done in range(1, 100):
        ticker.update(done, "examples")
    assert stream.getvalue() == "", "no line before the interval has passed"
    assert ticker.line(5, "examples", ticker.started).endswith(
        "(0 s elapsed, about 1 h 00 min left)"
    )


def test_the_terminal_line_never_wraps() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=40)
    ticker = Ticker(console, "fuzz zoo:key-per-boot", budget_s=30)
    ticker.update(450, "examples (89/s), 2409 purchases, 22 fault kinds")
    ticker.close()
    # The live line is drawn on one row: cursor moves aside, no row is longer
    # than the width and none holds the tail of the line.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    rows = re.split(r"[\r\n]", text)
    assert all(len(r) <= 40 for r in rows), rows
    assert not any("elapsed" in r and not r.startswith("fuzz") for r in rows), rows
