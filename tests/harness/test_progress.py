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
