"""A fleet over several machines: workers join one run through the broker.

The coordinator (`posharness fleet --remote-workers N --run NAME --broker URL --db
postgresql://...`) starts the host as usual, on a private schema of the shared
database, and opens the run; each worker (`posharness fleet --join NAME --broker URL
--db postgresql://...`, on any machine that reaches the broker and the database)
joins it. Once N have joined, the coordinator gives each a slice of the terminals and
of the rate; each drives its slice, judges it from the host's books in the shared
database, and sends back its report, latencies as a histogram that merges exactly
(harness/mqtt/histogram.py). The coordinator merges the reports into one verdict.

Topics, under `posh/fleet/<run>/`: `open` (retained while the run takes workers),
`join/<worker>`, `assign/<worker>`, `report/<worker>`; JSON, QoS 1.

What a worker trusts: nothing that could run code or reach another database. It runs
the firmware it was started with (`--firmware`) and refuses an assignment naming
another; it uses its own `--db`, with only the schema name from the assignment (a
name the coordinator made, checked against its pattern); every number is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .fleet import QUIET_TIMEOUT_S, FleetReport, merge_reports, report_from_wire
from .wire import BrokerAddress

RUN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCHEMA_NAME = re.compile(r"fleet_[0-9a-f]{12}")
WORKERS_MAX = 64
JOIN_TIMEOUT_S = 120.0
PAYLOAD_BYTES_MAX = 1 << 20  # a report (histogram included) is a few kB


class RemoteError(Exception):
    """The run could not be carried out (one line, for the user)."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A worker's slice of the run."""

    first_terminal: int
    terminals: int
    rate_per_s: float
    duration_s: float
    codec: str
    timeout_ms: int
    firmware: str
    wallet_share: float
    volatile_journal: bool
    schema: str  # the run's schema in the shared database

    @staticmethod
    def from_wire(data: Any) -> Assignment:
        """Checked: it came over the broker."""
        if not isinstance(data, dict):
            raise RemoteError("assignment: expected a JSON object")
        try:
            a = Assignment(
                first_terminal=_int(data, "first_terminal", 1, 9999),
                terminals=_int(data, "terminals", 1, 9999),
                rate_per_s=_num(data, "rate_per_s", 1e-3, 1e6),
                duration_s=_num(data, "duration_s", 1e-3, 86_400),
                codec=str(data.get("codec")),
                timeout_ms=_int(data, "timeout_ms", 100, 3_600_000),
                firmware=str(data.get("firmware")),
                wallet_share=_num(data, "wallet_share", 0, 1),
                volatile_journal=data.get("volatile_journal") is True,
                schema=str(data.get("schema")),
            )
        except (TypeError, ValueError) as exc:
            raise RemoteError(f"assignment: {exc}") from None
        if a.codec not in ("iso8583", "json"):
            raise RemoteError(f"assignment.codec: {a.codec!r} is not iso8583 or json")
        if not SCHEMA_NAME.fullmatch(a.schema):
            raise RemoteError(f"assignment.schema: {a.schema[:80]!r} is not a fleet schema")
        return a


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int:
    v = data.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{key}: expected an integer in {low}..{high}, got {v!r}"[:200])
    return v


def _num(data: dict[str, Any], key: str, low: float, high: float) -> float:
    v = data.get(key)
    if not isinstance(v, int | float) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{key}: expected a number in {low}..{high}, got {v!r}"[:200])
    return float(v)


def topic(run: str, *parts: str) -> str:
    return "/".join(("posh", "fleet", run, *parts))


def default_worker_id() -> str:
    """This machine and process, as a topic level."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def _client(address: BrokerAddress, identifier: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=identifier,
        max_queued_incoming_messages=1000,
    )


def _decode(payload: Any) -> Any:
    if not isinstance(payload, bytes | bytearray) or len(payload) > PAYLOAD_BYTES_MAX:
        return None
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


async def coordinate(
    address: BrokerAddress,
    run: str,
    workers: int,
    slice_of: dict[str, Any],
    terminals: int,
    rate_per_s: float,
    join_timeout_s: float = JOIN_TIMEOUT_S,
) -> FleetReport:
    """Open `run`, wait for `workers` to join, assign them `terminals` and
    `rate_per_s` in slices (`slice_of`: what every slice shares), merge their reports."""
    async with _client(address, f"posh-fleet-{run}") as client:
        await client.subscribe(topic(run, "join", "+"), qos=1)
        await client.subscribe(topic(run, "report", "+"), qos=1)
        opened = json.dumps({"workers": workers, "v": 1})
        await client.publish(topic(run, "open"), opened, qos=1, retain=True)
        try:
            joined = await _gather(client, run, "join", workers, join_timeout_s, set())
            ids = sorted(joined)
            sizes = [
                terminals // workers + (1 if i < terminals % workers else 0) for i in range(workers)
            ]
            first = 1
            for wid, size in zip(ids, sizes, strict=True):
                a = {**slice_of, "first_terminal": first, "terminals": size}
                a["rate_per_s"] = rate_per_s * size / terminals
                await client.publish(topic(run, "assign", wid), json.dumps(a), qos=1)
                first += size
            wait_s = float(slice_of["duration_s"]) + QUIET_TIMEOUT_S + join_timeout_s
            reports = await _gather(client, run, "report", workers, wait_s, set(ids))
        finally:
            await client.publish(topic(run, "open"), b"", qos=1, retain=True)
    parts = []
    for wid in ids:
        data = reports[wid]
        if isinstance(data, dict) and "error" in data:
            raise RemoteError(f"worker {wid}: {str(data['error'])[:300]}")
        try:
            parts.append(report_from_wire(data))
        except ValueError as exc:
            raise RemoteError(f"worker {wid}: {exc}") from None
    return merge_reports(parts)


async def _gather(
    client: aiomqtt.Client,
    run: str,
    kind: str,
    want: int,
    timeout_s: float,
    only: set[str],
) -> dict[str, Any]:
    """The first message of `kind` from each of `want` workers (from `only`, if given)."""
    got: dict[str, Any] = {}
    prefix = topic(run, kind) + "/"
    try:
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                name = str(message.topic)
                if not name.startswith(prefix):
                    continue
                wid = name[len(prefix) :]
                if (only and wid not in only) or wid in got or not RUN_NAME.fullmatch(wid):
                    continue
                got[wid] = _decode(message.payload)
                if len(got) == want:
                    return got
    except TimeoutError:
        pass
    raise RemoteError(
        f"only {len(got)} of {want} workers {'joined' if kind == 'join' else 'reported'} "
        f"run {run!r} within {timeout_s:.0f} s"
    )


async def join(
    address: BrokerAddress,
    run: str,
    worker: str,
    base_db: str,
    firmware: str,
    join_timeout_s: float = JOIN_TIMEOUT_S,
) -> FleetReport:
    """Join `run` as `worker`, drive the slice it is given, report back."""
    from acquirer.pgstore import with_schema
    from harness.runner import load_firmware

    from .fleet import FleetOptions, report_to_wire, run_fleet
    from .hostdb import load_keys

    factory = load_firmware(firmware)
    async with _client(address, f"posh-fleet-{run}-{worker}") as client:
        await client.subscribe(topic(run, "assign", worker), qos=1)
        # The coordinator subscribes to joins before it opens the run (a retained
        # message): a worker started first waits for it, one started later sees it.
        await client.subscribe(topic(run, "open"), qos=1)
        data: Any = None
        try:
            async with asyncio.timeout(join_timeout_s):
                async for message in client.messages:
                    if str(message.topic) == topic(run, "open"):
                        if message.payload:
                            await client.publish(topic(run, "join", worker), b"{}", qos=1)
                        continue
                    data = _decode(message.payload)
                    break
        except TimeoutError:
            raise RemoteError(
                f"run {run!r}: no coordinator opened it, or gave this worker no slice, "
                f"within {join_timeout_s:.0f} s"
            ) from None
        try:
            a = Assignment.from_wire(data)
            if a.firmware != firmware:
                raise RemoteError(
                    f"the run drives firmware {a.firmware[:80]!r}; this worker was started "
                    f"with --firmware {firmware!r} and runs no other"
                )
        except RemoteError as exc:
            await client.publish(
                topic(run, "report", worker), json.dumps({"error": str(exc)}), qos=1
            )
            raise
        db = with_schema(base_db, a.schema)
        opts = FleetOptions(
            terminals=a.terminals,
            rate_per_s=a.rate_per_s,
            duration_s=a.duration_s,
            codec="json" if a.codec == "json" else "iso8583",
            durable_journal=not a.volatile_journal,
            response_timeout_ms=a.timeout_ms,
            first_terminal=a.first_terminal,
            wallet_share=a.wallet_share,
        )
        report = await run_fleet(address, db, opts, firmware=factory, mac_keys=load_keys(db))
        await client.publish(
            topic(run, "report", worker), json.dumps(report_to_wire(report)), qos=1
        )
    return report
