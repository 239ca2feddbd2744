"""Fleet benchmark: host and fleet in separate processes against a private mosquitto.

Runs `posharness fleet` (which starts the host as its own process) at a few
offered rates with QoS 1 and MAC on, and prints throughput and latency
percentiles; then the simulation's speed-up over real time for one scenario.

usage: python bench/fleet.py [--rates 200,500,1000,4000] [--duration 5] [--terminals 50]
                             [--procs 1] [--codec iso8583|json] [--journals fsync,memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fleet(
    rate: float,
    duration: float,
    terminals: int,
    volatile: bool,
    procs: int = 1,
    codec: str = "iso8583",
) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "harness.mqtt",
        "fleet",
        "--json",
        "--terminals",
        str(terminals),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--procs",
        str(procs),
        "--codec",
        codec,
    ]
    if volatile:
        cmd.append("--volatile-journal")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if not out.stdout.strip():
        raise SystemExit(f"fleet failed: {out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def sim_speedup(scenario: str) -> tuple[str, float, float]:
    sys.path.insert(0, str(ROOT))
    from harness.runner import run_scenario
    from scenarios.loader import load_scenario

    sc = load_scenario(ROOT / scenario)
    started = time.perf_counter()
    runs = 20
    for _ in range(runs):
        result = run_scenario(sc)
    wall = (time.perf_counter() - started) / runs
    return sc.name, result.sim_ms / 1000, result.sim_ms / 1000 / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="200,500,1000,4000")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--procs", type=int, default=1, help="fleet processes (posharness fleet)")
    ap.add_argument("--codec", default="iso8583", choices=("iso8583", "json"))
    ap.add_argument("--journals", default="fsync,memory", help="fsync, memory or both")
    ap.add_argument("--scenario", default="scenarios/incidents/dup-response-lost-retry.toml")
    a = ap.parse_args()
    print(
        f"{'offered/s':>9} {'journal':>8} {'done/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'retries':>7} {'fleet us':>8} {'host us':>8} {'ok':>3}"
    )
    for rate in [float(r) for r in a.rates.split(",")]:
        for journal in a.journals.split(","):
            r = fleet(rate, a.duration, a.terminals, journal == "memory", a.procs, a.codec)
            lat = r["latency_ms"]
            assert isinstance(lat, dict)
            done = max(1, int(str(r["completed"])))
            fleet_us = float(str(r["fleet_cpu_s"])) * 1e6 / done
            host_cpu = r.get("host_cpu_s")
            host_us = f"{float(str(host_cpu)) * 1e6 / done:.0f}" if host_cpu is not None else "-"
            print(
                f"{rate:>9.0f} {journal:>8} "
                f"{r['throughput_per_s']:>8} {lat['p50']:>7} {lat['p95']:>7} {lat['p99']:>7} "
                f"{r['retries']:>7} {fleet_us:>8.0f} {host_us:>8} "
                f"{'yes' if r['invariants_ok'] else 'NO':>3}",
                flush=True,
            )
    name, sim_s, speedup = sim_speedup(a.scenario)
    print(
        f"simulation: {name}: {sim_s:.1f} s of virtual time, {speedup:,.0f}x faster than real time"
    )


if __name__ == "__main__":
    main()
