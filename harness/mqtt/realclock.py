"""The one place the MQTT driver reads real time.

The cores never read a clock. The real-time driver must: timers fire on the
event loop's monotonic clock, and the host stamps durable records with wall
time so that idempotency retention and the classic (terminal, STAN, day) rule
stay meaningful across host restarts. Nothing here decides the outcome of a
deterministic simulation run; it only serves the real transport.
"""

from __future__ import annotations

import asyncio
import time


def wall_ms() -> int:
    """Milliseconds since the Unix epoch (the host's `now_ms` for stored records)."""
    return time.time_ns() // 1_000_000


def loop_ms() -> float:
    """The running event loop's monotonic clock, in milliseconds (for latencies)."""
    return asyncio.get_running_loop().time() * 1000.0


def perf_s() -> float:
    """A monotonic clock in seconds, usable outside an event loop (reports only)."""
    return time.perf_counter()


async def pause(seconds: float) -> None:
    """Wait `seconds` of real time: reconnect backoff and paced load only, never a test."""
    await asyncio.sleep(seconds)
