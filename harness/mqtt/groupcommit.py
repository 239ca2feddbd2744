"""Group commit for a host process: the requests handled in one iteration of the event
loop share one SQLite transaction (`Acquirer.begin_group`; each request is a savepoint
in it) and one WAL fsync, at the end of the iteration; their answers leave after both.
The fsync runs on the loop: a helper thread was measured and lost (see
harness/mqtt/journal.py). Used by the MQTT host service and the TCP host.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .host_service import HostCore

log = logging.getLogger("posharness.mqtt.host")


class GroupCommit:
    """Holds each answer (a callable that sends it) until the fsync that makes its
    transaction durable. `core` must have been made with `group_commit=True`."""

    def __init__(self, core: HostCore) -> None:
        self.core = core
        # Answers waiting for the WAL fsync that makes their transactions durable.
        self._unsynced: list[Callable[[], object]] = []
        self.syncing = False
        self.syncs = 0
        self.failed = False

    def open(self) -> None:
        """Before handling a request: open a group if none is (the rest of this loop
        iteration's requests join it)."""
        acquirer = self.core.acquirer
        if self.core.wal is not None and not acquirer.in_group and not self.failed:
            acquirer.begin_group()
            self._schedule()

    def _schedule(self) -> None:
        if not self.syncing:
            self.syncing = True
            # The rest of this loop iteration's requests join the group.
            asyncio.get_running_loop().call_soon(self.sync)

    def send(self, deliver: Callable[[], object]) -> None:
        """`deliver` an answer once its transaction is durable (at once without a WAL)."""
        if self.failed:
            self.core.stats["withheld"] += 1
            return
        if self.core.wal is None:
            deliver()
            return
        self._unsynced.append(deliver)
        self._schedule()

    def sync(self) -> None:
        """Commit the open group, fsync the WAL once, then send the group's answers."""
        self.syncing = False
        acquirer, wal = self.core.acquirer, self.core.wal
        answers, self._unsynced = self._unsynced, []
        try:
            if acquirer.in_group:
                acquirer.commit_group()
            if wal is not None and answers:
                wal.sync()
        except (sqlite3.Error, OSError) as exc:
            self.core.stats["withheld"] += len(answers)
            self._fail(f"group commit failed: {exc}")
            return
        self.syncs += 1
        for deliver in answers:
            deliver()

    def flush(self) -> None:
        """At shutdown: finish the open group (commit, fsync, answer)."""
        if self.syncing and not self.failed:
            self.sync()

    def _fail(self, why: str) -> None:
        """The file's state is unknown (a retried fsync can "succeed" over lost pages):
        no answer leaves this process again. Terminals time out and reverse;
        restarting the host recovers the file as after a crash."""
        self.failed = True
        self.syncing = False
        self.core.stats["withheld"] += len(self._unsynced)
        self._unsynced.clear()
        log.critical("host: %s; no more answers are sent: restart the host", why)
