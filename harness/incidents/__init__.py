"""Incident logs: render a trace as a terminal log and a host log, and import such a
pair of logs back into a replayable scenario.

The import runs in stages, one module each: `parse` (read both logs), `match` (pair
sends with arrivals, estimate clock skew and latency), `infer` and `people` (the
fault plan, the purchases and the cashier's steps), `build` (assemble the scenario)
and `verify` (replay it and compare with the logs). `render` goes the other way.
docs/incident-logs.md describes the formats and the tolerances.
"""

from .build import import_logs, terminals_in
from .model import Imported
from .parse import HOST_EVENTS, TERMINAL_EVENTS, Entry, Log, parse_log, parse_ts
from .render import render_logs, trace_to_logs
from .verify import Outcome, compare_outcomes, iter_unexplained, logs_of_trace, outcome_of

__all__ = [
    "HOST_EVENTS",
    "TERMINAL_EVENTS",
    "Entry",
    "Imported",
    "Log",
    "Outcome",
    "compare_outcomes",
    "import_logs",
    "iter_unexplained",
    "logs_of_trace",
    "outcome_of",
    "parse_log",
    "parse_ts",
    "render_logs",
    "terminals_in",
    "trace_to_logs",
]
