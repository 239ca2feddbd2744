"""The mock acquirer on PostgreSQL vs SQLite, and several host instances (issue 16).

Three measurements, in one run:

1. Host cost per purchase: the same signed purchase frames through `HostCore` on a
   SQLite file (one fsync per purchase, as a bare HostCore; and the MQTT service's
   group commit) and on PostgreSQL (each request its own transactions). CPU is this
   process's, plus for PostgreSQL the server backend's serving it (from /proc: the
   server runs on this machine).
2. Races: two instances (`acquirer.races.Pair`) given the same requests at the same
   moment from two threads, ROUNDS sales and every third one's reversal: how often
   each side won, how often the database refused a request that was then run again,
   charges, and the ledger.
3. Fleet: `posharness fleet` with one host on SQLite, one on PostgreSQL and two on
   PostgreSQL (`--hosts 2`), same load.

    python bench/postgres.py [--purchases 2000] [--rounds 200] [--fleet-s 5] [--no-fleet]

Needs PostgreSQL at $POSHARNESS_PG_URL (default postgresql://postgres@127.0.0.1:5432/test)
and, for the fleet, mosquitto.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from host_core import TID, feed, purchase_frames  # noqa: E402

from acquirer.pgtesting import base_url, scratch_schema, unavailable  # noqa: E402
from acquirer.races import PAN, TERMINAL, pair  # noqa: E402
from acquirer.testing import fixed_test_mac_key  # noqa: E402
from harness.mqtt.fleet_procs import _process_cpu_s  # noqa: E402
from harness.mqtt.host_service import HostCore  # noqa: E402
from harness.mqtt.hostdb import open_acquirer, provision  # noqa: E402
from harness.mqtt.ratelimit import RateLimiter  # noqa: E402


def host_cost(db: str, frames: list[bytes], group: int) -> dict[str, int]:
    """Feed `frames` to a HostCore on `db`; wall and CPU per purchase (us)."""
    provision(db, {TID: fixed_test_mac_key(TID)})
    acquirer = open_acquirer(db)
    backend = None
    if db.startswith("postgresql"):
        backend = acquirer._db.execute("SELECT pg_backend_pid()").fetchone()[0]
    unlimited = RateLimiter(rate_per_s=10**9, burst=10**9)
    core = HostCore(acquirer, group_commit=group > 0, limiter=unlimited)
    server0 = _process_cpu_s(backend) or 0.0
    wall, cpu = feed(core, frames, group)
    server = (_process_cpu_s(backend) or 0.0) - server0
    charged = core.stats["charge"]
    acquirer.close()
    if charged != len(frames):
        raise SystemExit(f"only {charged} of {len(frames)} purchases charged: {core.stats}")
    per = 1e6 / len(frames)
    return {
        "wall_us": round(wall * per),
        "host_cpu_us": round(cpu * per),
        "server_cpu_us": round(server * per),
    }


def races(url: str, rounds: int) -> dict[str, object]:
    """Both instances get every sale (and every third sale's reversal) at once."""
    outcomes: Counter[str] = Counter()
    with pair(url) as race:
        start = threading.Barrier(2)
        answers: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}

        def serve(name: str) -> None:
            host = race.a if name == "a" else race.b
            for n in range(rounds):
                start.wait()
                resp = host.handle(TERMINAL.purchase(n + 1, 1_000, PAN, f"S{n}"), n)
                answers[name].append((resp.rc, resp.rrn))
                start.wait()
                if n % 3 == 0:
                    rev = TERMINAL.reversal(100_000 + n, f"S{n}", amount=1_000, pan=PAN)
                    outcomes["reversal " + host.handle(rev, n).rc] += 1

        other = race.in_b(lambda: serve("b"))
        serve("a")
        other.result()
        for a, b in zip(answers["a"], answers["b"], strict=True):
            if a[0] == b[0] == "00":
                outcomes["both 00, same RRN" if a[1] == b[1] else "both 00, TWO RRNs"] += 1
            else:
                outcomes[" / ".join(sorted((a[0], b[0])))] += 1
        return {
            "rounds": rounds,
            "outcomes": dict(sorted(outcomes.items())),
            "reruns_after_refusal": race.a.retries + race.b.retries,
            "charges_held": race.charges(),
            "expected_charges": rounds - len(range(0, rounds, 3)),
            "ledger_sum": race.a.ledger_sum(),
        }


def fleet(hosts: int, db: str | None, seconds: float) -> dict[str, object]:
    cmd = [sys.executable, "-m", "harness.cli", "fleet", "--terminals", "20", "--rate", "200"]
    cmd += ["--duration", str(seconds), "--json", "--volatile-journal", "--hosts", str(hosts)]
    if db:
        cmd += ["--db", db]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False).stdout
    j = json.loads(out.strip().splitlines()[-1])
    done = max(1, j["completed"])
    return {
        "hosts": hosts,
        "store": "postgresql" if db else "sqlite",
        "completed": f"{j['completed']}/{j['offered']}",
        "throughput_per_s": j["throughput_per_s"],
        "p50_ms": j["latency_ms"]["p50"],
        "p95_ms": j["latency_ms"]["p95"],
        "host_cpu_us_per_purchase": round((j["host_cpu_s"] or 0) * 1e6 / done),
        "invariants_ok": j["invariants_ok"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--purchases", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--fleet-s", type=float, default=5.0)
    ap.add_argument("--no-fleet", action="store_true")
    a = ap.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"bench/postgres.py: {reason}")
    frames = purchase_frames(a.purchases)
    with tempfile.TemporaryDirectory(prefix="posharness-pgbench-") as tmp:
        for label, group in (("sqlite, one fsync per purchase", 0), ("sqlite, group of 64", 64)):
            print(label, host_cost(str(Path(tmp) / f"host{group}.db"), frames, group))
    with scratch_schema("bench") as url:
        print("postgresql, a transaction per step", host_cost(url, frames, 0))
    with scratch_schema("race") as url:
        print("races", json.dumps(races(url, a.rounds)))
    if not a.no_fleet:
        for hosts, db in ((1, None), (1, base_url()), (2, base_url())):
            print("fleet", json.dumps(fleet(hosts, db, a.fleet_s)))


if __name__ == "__main__":
    main()
