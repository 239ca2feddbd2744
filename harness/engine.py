"""The deterministic engine: one virtual clock and one event queue.

Events are ordered by (time, sequence): two events at the same virtual millisecond
run in the order they were scheduled, so a run depends on nothing but its inputs.
There is no wall clock here and no global random source; randomness comes from
one `random.Random(seed)` that the world hands down (see `child_rng`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

# A run stops after this many events even if work is left: a firmware that loops
# forever must not hang CI. Scenarios scale it with their size.
EVENTS_MAX_DEFAULT = 2_000_000


class SimClock:
    """Virtual time in integer milliseconds. Only the scheduler moves it."""

    __slots__ = ("now_ms",)

    def __init__(self, start_ms: int = 0) -> None:
        self.now_ms = start_ms


class Scheduler:
    """A priority queue of callbacks ordered by (time_ms, seq)."""

    __slots__ = ("_queue", "_seq", "clock", "executed")

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._queue: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.executed = 0

    def at(self, time_ms: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run `fn(arg)` at virtual `time_ms` (never in the past)."""
        if time_ms < self.clock.now_ms:
            time_ms = self.clock.now_ms
        self._seq += 1
        heapq.heappush(self._queue, (time_ms, self._seq, fn, arg))

    def after(self, delay_ms: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.clock.now_ms + max(0, delay_ms), fn, arg)

    def __len__(self) -> int:
        return len(self._queue)

    def next_time(self) -> int:
        return self._queue[0][0] if self._queue else -1

    def drop_if_all(self, moot: Callable[[Callable[[Any], None], Any], bool]) -> bool:
        """When every queued callback is moot (`moot(fn, arg)`: running it would do
        nothing), drop them all and return True (the world is at rest); else False."""
        if all(moot(fn, arg) for _, _, fn, arg in self._queue):
            self._queue.clear()
            return True
        return False

    def run(self, until_ms: int, events_max: int) -> bool:
        """Run events up to `until_ms`. True when the queue ran dry, False when a
        limit (time or event count) stopped it with work left."""
        queue = self._queue
        clock = self.clock
        pop = heapq.heappop
        while queue:
            if queue[0][0] > until_ms or self.executed >= events_max:
                return False
            time_ms, _, fn, arg = pop(queue)
            clock.now_ms = time_ms
            self.executed += 1
            fn(arg)
        return True


def child_rng(root: random.Random, name: str) -> random.Random:
    """A child RNG for one component, derived from the root without disturbing
    other components: adding a draw in one place does not shift another's."""
    return random.Random(f"{root.getrandbits(64)}:{name}")
