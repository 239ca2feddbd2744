"""Progress for commands that can run longer than a few seconds.

On a terminal: one rich status line, redrawn in place, with elapsed and remaining
time. Piped (a CI log): a plain line on stderr at most every `interval_s`, so a
60-second fuzz campaign is not 60 seconds of silence, and a log does not fill up
with redraws. Stdout stays the command's result (tables, JSON).

Wall time is measured here to inform a person, never to decide anything in a run.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

INTERVAL_S = 10.0


def clock(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Ticker:
    """`update(done, detail)` as work proceeds; `close()` at the end.

    `total` (items) or `budget_s` (seconds) gives the remaining time; with neither,
    only the elapsed time is shown."""

    def __init__(
        self,
        console: Console,
        what: str,
        *,
        total: int | None = None,
        budget_s: float | None = None,
        interval_s: float = INTERVAL_S,
        stream: TextIO | None = None,
    ) -> None:
        self.what = what
        self.total = total
        self.budget_s = budget_s
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.last_line = self.started
        self.live = (
            Live(Text(what), console=console, transient=True, auto_refresh=False)
            if console.is_terminal
            else None
        )
        if self.live is not None:
            self.live.start()

    def remaining_s(self, done: int, now: float) -> float | None:
        elapsed = now - self.started
        if self.budget_s is not None:
            return max(0.0, self.budget_s - elapsed)
        if self.total and done:
            return elapsed / done * max(0, self.total - done)
        return None

    def line(self, done: int, detail: str, now: float) -> str:
        count = f"{done}/{self.total}" if self.total else str(done)
        left = self.remaining_s(done, now)
        timing = f"{clock(now - self.started)} elapsed"
        if left is not None:
            timing += f", about {clock(left)} left"
        return f"{self.what}: {count}{' ' + detail if detail else ''} ({timing})"

    def update(self, done: int, detail: str = "") -> None:
        now = time.perf_counter()
        if self.live is not None:
            # One line, never wrapped: cut at the terminal's width instead.
            text = Text(self.line(done, detail, now), no_wrap=True, overflow="ellipsis")
            self.live.update(text, refresh=True)
        elif now - self.last_line >= self.interval_s:
            self.last_line = now
            print(self.line(done, detail, now), file=self.stream, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
