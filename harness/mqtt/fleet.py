"""Fleet load mode: N terminals at R purchases/s in total for S seconds, then a verdict.

The fleet shares one MQTT connection (user `fleet`), each terminal a real
`TerminalDriver` running the firmware with its journal in SQLite. Purchases are
offered open-loop (purchase k is due at k / R seconds, on terminal k mod N); a
terminal serves its purchases one at a time, like one cashier. Latency is
measured from the first key press to the final display.

When the load is over and every terminal is quiet (no timers, no print jobs:
reversals done), the verdict is judged from outside the system under test: the
host's SQLite books and what the terminals showed.

* ``no-duplicate-charge``: per purchase, net money taken <= its amount;
* ``no-charge-on-failure``: a purchase shown declined/failed has zero net debit;
* ``approved-is-charged``: a purchase shown approved was charged exactly its amount;
* ``ledger-balances``: the double-entry ledger sums to zero;
* ``eventually-settles``: every purchase reached a final display and every terminal went quiet.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acquirer import store
from terminal.firmware import Firmware, FirmwareConfig

from . import realclock
from .histogram import Histogram
from .hostdb import fleet_code, fleet_pan, open_db, terminal_id
from .journal import Journal, JournalFile
from .proxy import FaultPlan, FaultProxy
from .terminal_driver import Intent, TerminalClient, TerminalDriver, terminal_config
from .wire import BrokerAddress, Codec

FLEET_CLIENT_ID = "posharness-fleet"
# Real seconds to wait, after the last purchase, for every terminal to go quiet.
QUIET_TIMEOUT_S = 60.0
# Smallest and largest fleet amounts: clear of every catalogue amount rule (500 = RC 05 ...).
AMOUNT_MIN, AMOUNT_SPREAD = 101, 397


@dataclass(frozen=True, slots=True)
class FleetOptions:
    terminals: int = 3
    rate_per_s: float = 10.0
    duration_s: float = 2.0
    codec: Codec = "iso8583"
    via_proxy: bool = False
    durable_journal: bool = True
    response_timeout_ms: int = 3_000
    max_sends: int = 2
    # Terminals are T<first_terminal>.. : several fleet processes split one fleet.
    first_terminal: int = 1
    # This share of the purchases (0..1, spread evenly) is paid by scanning a wallet
    # code (the fleet wallets pay at once) instead of tapping a card.
    wallet_share: float = 0.0


@dataclass(slots=True)
class FleetReport:
    offered: int = 0
    completed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    throughput_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    reversals: int = 0
    wall_s: float = 0.0
    # CPU seconds the fleet process(es) used (all threads): the cost of the load side.
    cpu_s: float = 0.0
    # CPU seconds the host process used meanwhile (when the fleet started it), else None.
    host_cpu_s: float | None = None
    invariants: dict[str, list[str]] = field(default_factory=dict)
    # Faults the wire proxy applied, by kind (with --faults), and frames it saw.
    faults: dict[str, int] = field(default_factory=dict)
    # Every latency (ms) of this process, and for merging the reports of several
    # processes or machines: the same as a histogram (harness/mqtt/histogram.py;
    # merged histograms give true percentiles, never averaged ones) and the span
    # from the first offer to the last finish on this process's own clock.
    latencies_ms: list[float] = field(default_factory=list)
    histogram: Histogram = field(default_factory=Histogram)
    span_s: float = 0.0

    @property
    def invariants_ok(self) -> bool:
        return all(not v for v in self.invariants.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "completed": self.completed,
            "outcomes": self.outcomes,
            "throughput_per_s": round(self.throughput_per_s, 1),
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
            "retries": self.retries,
            "reversals": self.reversals,
            "wall_s": round(self.wall_s, 3),
            "fleet_cpu_s": round(self.cpu_s, 3),
            "host_cpu_s": None if self.host_cpu_s is None else round(self.host_cpu_s, 3),
            "invariants_ok": self.invariants_ok,
            "invariants": {k: v[:10] for k, v in self.invariants.items()},
            "faults": dict(sorted(self.faults.items())),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run_fleet(
    address: BrokerAddress,
    host_db: str,
    options: FleetOptions,
    *,
    firmware: Callable[[FirmwareConfig], Firmware] | None = None,
    plan: FaultPlan | None = None,
    proxy_address: BrokerAddress | None = None,
    journal_dir: str | None = None,
    mac_keys: Mapping[str, bytes],
    tcp: tuple[str, int] | None = None,
) -> FleetReport:
    """Drive the fleet against a host already serving `host_db`; judge and report.

    `mac_keys`: terminal id -> MAC key, as provisioned in the host's database.
    `tcp`: (host, port) of a host on TCP (`acquirer serve --listen`): the terminals
    share one TCP connection to it instead of the broker at `address`."""
    from harness.tcp.client import TcpTerminalClient
    from harness.tcp.proxy import TcpFaultProxy
    from terminal.reference import ReferenceFirmware

    factory = firmware or ReferenceFirmware
    opts = options
    via_proxy = opts.via_proxy or plan is not None
    tmp = None
    if journal_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="posharness-fleet-")
        journal_dir = tmp.name
    client_id = FLEET_CLIENT_ID
    if opts.first_terminal != 1:
        client_id = f"{FLEET_CLIENT_ID}-{opts.first_terminal}"
    proxy: FaultProxy | TcpFaultProxy | None = None
    client: TerminalClient | TcpTerminalClient
    if tcp is not None:
        # A connection that goes silent is given up after twice a response timeout.
        client = TcpTerminalClient(*tcp, silence_s=2 * opts.response_timeout_ms / 1000)
        proxy = TcpFaultProxy(tcp, plan) if plan is not None else None
    else:
        proxy = FaultProxy(proxy_address or address, plan) if plan is not None else None
        client = TerminalClient(address, client_id=client_id, via_proxy=via_proxy)
    # One journal file for the whole process: one group commit (one fsync) carries
    # the journal writes of every terminal that wrote meanwhile.
    journal_file = JournalFile(str(Path(journal_dir) / "journal.db"), durable=opts.durable_journal)
    drivers: list[TerminalDriver] = []
    first = opts.first_terminal
    for n in range(first, first + opts.terminals):
        tid = terminal_id(n)
        cfg = terminal_config(
            tid,
            mac_keys[tid],
            response_timeout_ms=opts.response_timeout_ms,
            max_sends=opts.max_sends,
        )
        journal = journal_file.journal(tid)

        def make(
            publish: Callable[[bytes], bool], cfg: FirmwareConfig = cfg, journal: Journal = journal
        ) -> TerminalDriver:
            return TerminalDriver(factory(cfg), cfg, journal, publish, codec=opts.codec)

        drivers.append(client.add(make))
    report = FleetReport()
    progress_task: asyncio.Task[None] | None = None
    try:
        if proxy is not None:
            await proxy.start()
        if isinstance(proxy, TcpFaultProxy) and isinstance(client, TcpTerminalClient):
            client.host, client.port = "127.0.0.1", proxy.port  # through the proxy
        await client.start()
        for d in drivers:
            d.boot()
        total = max(1, int(opts.rate_per_s * opts.duration_s))
        report.offered = total
        intents: list[Intent] = []
        all_done = asyncio.Event()
        stopped = 0

        def finished(intent: Intent | None) -> None:
            nonlocal stopped
            if intent is None:
                stopped += 1
            else:
                intents.append(intent)
            if len(intents) + stopped == total:
                all_done.set()

        t0 = realclock.loop_ms()
        cpu0 = time.process_time()
        progress_task = asyncio.create_task(_show_progress(intents, total))
        k = 0
        while k < total:
            # Offer every purchase now due (open loop: lateness is not made up by pausing).
            due = min(total, int((realclock.loop_ms() - t0) * opts.rate_per_s / 1000) + 1)
            while k < due:
                idx = k % opts.terminals
                amount = AMOUNT_MIN + (k % AMOUNT_SPREAD)
                share = opts.wallet_share
                if share and int((k + 1) * share) > int(k * share):
                    drivers[idx].offer(amount, fleet_code(first - 1 + idx), finished, True)
                else:
                    drivers[idx].offer(amount, fleet_pan(first - 1 + idx), finished)
                k += 1
            if k < total:
                next_ms = t0 + k * 1000.0 / opts.rate_per_s
                await realclock.pause(max(0.0, next_ms - realclock.loop_ms()) / 1000)
        try:
            async with asyncio.timeout(QUIET_TIMEOUT_S):
                await all_done.wait()
                # Idle all at once, not one after another: a driver waited for first
                # can turn busy again (a late or redelivered answer starts work) while
                # a later one is awaited, and the judge below would then see it busy.
                # Nothing awaits between this check and the judge.
                while not all(d.idle.is_set() for d in drivers):
                    for d in drivers:
                        await d.idle.wait()
        except TimeoutError:
            report.invariants.setdefault("eventually-settles", []).append(
                f"not quiet {QUIET_TIMEOUT_S} s after the load: "
                f"{total - len(intents)} "
                f"{'purchase' if total - len(intents) == 1 else 'purchases'} unfinished"
            )
        t_end = max((i.finished_ms for i in intents), default=t0)
        report.wall_s = (realclock.loop_ms() - t0) / 1000
        report.cpu_s = time.process_time() - cpu0
        report.completed = len(intents)
        for i in intents:
            report.outcomes[i.outcome] = report.outcomes.get(i.outcome, 0) + 1
        span_s = max(1e-9, (t_end - t0) / 1000)
        report.throughput_per_s = len(intents) / span_s
        report.latencies_ms = sorted(i.latency_ms for i in intents)
        report.histogram = Histogram.of(report.latencies_ms)
        report.span_s = span_s
        report.latency_ms = latency_summary(report.latencies_ms)
        report.retries = sum(d.wire.retries for d in drivers)
        report.reversals = sum(d.wire.reversals for d in drivers)
        judge(report, host_db, drivers, intents)
    finally:
        if progress_task is not None:
            progress_task.cancel()
        await client.stop()
        if proxy is not None:
            report.faults = dict(proxy.stats)
            await proxy.stop()
        journal_file.close()
        if tmp is not None:
            tmp.cleanup()
    return report


async def _show_progress(intents: list[Intent], total: int) -> None:
    """Every few seconds: how many purchases have finished (on stderr; a fleet with
    faults can run for a minute, which must not be a minute of silence)."""
    from rich.console import Console

    from harness.progress import Ticker

    ticker = Ticker(Console(stderr=True), "fleet", total=total)
    try:
        while True:
            await realclock.pause(1.0)
            ticker.update(len(intents), "purchases finished")
    finally:
        ticker.close()


def latency_summary(sorted_ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(sorted_ms, 0.50),
        "p95": percentile(sorted_ms, 0.95),
        "p99": percentile(sorted_ms, 0.99),
        "max": sorted_ms[-1] if sorted_ms else 0.0,
    }


def merge_reports(parts: list[FleetReport]) -> FleetReport:
    """One report for a fleet split over several processes or machines (each judged
    its terminals). Percentiles come from the merged histograms (every latency of
    every part, to within 1 %); throughput is every purchase over the longest part's
    span (parts start together, on a signal; their clocks need not agree)."""
    out = FleetReport()
    for p in parts:
        out.offered += p.offered
        out.completed += p.completed
        for k, v in p.outcomes.items():
            out.outcomes[k] = out.outcomes.get(k, 0) + v
        out.retries += p.retries
        out.reversals += p.reversals
        out.wall_s = max(out.wall_s, p.wall_s)
        out.cpu_s += p.cpu_s
        out.histogram.merge(p.histogram)
        for name, problems in p.invariants.items():
            out.invariants.setdefault(name, []).extend(problems)
        for k, n in p.faults.items():
            out.faults[k] = out.faults.get(k, 0) + n
    out.latency_ms = out.histogram.summary()
    if parts:
        out.span_s = max(p.span_s for p in parts)
        out.throughput_per_s = out.completed / max(1e-9, out.span_s)
    return out


# Bounds on a report read from another process or machine.
_WIRE_COUNTS = ("offered", "completed", "retries", "reversals")
_WIRE_NUMBERS = ("wall_s", "cpu_s", "span_s")
WIRE_PROBLEMS_MAX = 100  # problems kept per invariant
WIRE_NAMES_MAX = 64  # invariants, outcomes and fault kinds


def report_to_wire(r: FleetReport) -> dict[str, Any]:
    """What a fleet worker sends its coordinator (no raw latencies: the histogram)."""
    return {
        **{k: getattr(r, k) for k in (*_WIRE_COUNTS, *_WIRE_NUMBERS)},
        "outcomes": r.outcomes,
        "invariants": {k: v[:WIRE_PROBLEMS_MAX] for k, v in r.invariants.items()},
        "faults": r.faults,
        "histogram": r.histogram.to_json(),
    }


def report_from_wire(data: Any) -> FleetReport:
    """A worker's report, checked (it crossed a process or a network): ValueError
    naming the field on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError("report: expected a JSON object")
    r = FleetReport()
    for k in _WIRE_COUNTS:
        v = data.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"report.{k}: expected an integer >= 0, got {v!r}"[:200])
        setattr(r, k, v)
    for k in _WIRE_NUMBERS:
        v = data.get(k)
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v < 1e9:
            raise ValueError(f"report.{k}: expected a number >= 0, got {v!r}"[:200])
        setattr(r, k, float(v))
    r.outcomes = _counts(data.get("outcomes"), "outcomes")
    r.faults = _counts(data.get("faults"), "faults")
    inv = data.get("invariants")
    if not isinstance(inv, dict) or len(inv) > WIRE_NAMES_MAX:
        raise ValueError("report.invariants: expected an object of lists")
    for name, problems in inv.items():
        if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
            raise ValueError(f"report.invariants.{name}: expected a list of strings"[:200])
        r.invariants[str(name)] = [p[:500] for p in problems[:WIRE_PROBLEMS_MAX]]
    r.histogram = Histogram.from_json(data.get("histogram"))
    r.latency_ms = r.histogram.summary()
    return r


def _counts(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > WIRE_NAMES_MAX:
        raise ValueError(f"report.{where}: expected an object of counts")
    for k, n in value.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"report.{where}.{k}: expected an integer >= 0"[:200])
    return {str(k): n for k, n in value.items()}


def judge(
    report: FleetReport, host_db: str, drivers: list[TerminalDriver], intents: list[Intent]
) -> None:
    """Fill `report.invariants` from the host's books and the terminals' displays."""
    inv = report.invariants
    for name in (
        "no-duplicate-charge",
        "no-charge-on-failure",
        "approved-is-charged",
        "ledger-balances",
        "eventually-settles",
    ):
        inv.setdefault(name, [])
    del intents  # each driver keeps its own finished purchases, with its terminal id
    by_driver = {d.tid: d for d in drivers}
    # (tid, purchase n) -> what the terminal finally showed for it.
    shown: dict[tuple[str, int], Intent] = {}
    if store.is_url(host_db):
        conn = open_db(host_db)
    else:
        conn = sqlite3.connect(f"file:{host_db}?mode=ro", uri=True)
    try:
        net: dict[tuple[str, int], int] = {}
        rows = conn.execute(
            "SELECT terminal_id, idem_key, amount, status, kind FROM txns ORDER BY id"
        ).fetchall()
        ledger_sum = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
    finally:
        conn.close()
    for tid, key, amount, status, kind in rows:
        d = by_driver.get(tid)
        if d is None or kind != "purchase":
            continue
        n = d.wire.keys.get(key, 0)
        charged = amount if status == "approved" else 0
        if n == 0:
            if charged:
                inv["no-duplicate-charge"].append(f"{tid} key {key}: charged, no purchase sent it")
            continue
        net[(tid, n)] = net.get((tid, n), 0) + charged
    for d in drivers:
        for i in d.finished:
            shown[(d.tid, i.n)] = i
    for (tid, n), i in sorted(shown.items()):
        taken = net.get((tid, n), 0)
        if taken > i.amount:
            inv["no-duplicate-charge"].append(f"{tid} purchase {n}: took {taken} for {i.amount}")
        if i.outcome in ("declined", "failed") and taken:
            inv["no-charge-on-failure"].append(
                f"{tid} purchase {n}: shown {i.outcome}, took {taken}"
            )
        if i.outcome == "approved" and taken != i.amount:
            inv["approved-is-charged"].append(f"{tid} purchase {n}: approved, took {taken}")
    if ledger_sum != 0:
        inv["ledger-balances"].append(f"ledger sums to {ledger_sum}, not 0")
    busy = [d.tid for d in drivers if d.pending_work]
    if busy:
        inv["eventually-settles"].append(f"terminals still busy: {', '.join(busy[:10])}")
