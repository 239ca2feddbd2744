"""Simulator throughput and memory: purchases per second with the trace and every
invariant on, and the wall time of the built-in suites.

    python bench/throughput.py                       # 20,000 purchases, clean + faulty
    python bench/throughput.py --purchases 1000000 --memory   # the 1M-purchase memory run
    python bench/throughput.py --terminals 3         # one terminal vs a world of three

Numbers go to stdout as a table and, with --json, as one JSON object. Wall time is
measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faults  # noqa: E402
from harness.runner import run_scenario  # noqa: E402
from scenarios.loader import find_scenarios, load_scenario  # noqa: E402
from scenarios.model import (  # noqa: E402
    INVARIANT_NAMES,
    CardSpec,
    Expect,
    Scenario,
    Step,
    TerminalSpec,
)

PANS = tuple(f"40000000000{i:05d}" for i in range(8))
GAP_MS = 3_000  # one purchase every 3 s of virtual time: each takes about 2.6 s
BATCH_EVERY = 1_000  # purchases per batch (the reference refuses more than 10,000)


def bench_scenario(purchases: int, faulty: bool, terminals: int = 1) -> Scenario:
    """`purchases` at one terminal, or spread round-robin over a world of `terminals`
    (each terminal at the same pace: the world is that many times busier)."""
    steps: list[Step] = []
    lanes = (
        tuple(TerminalSpec(id=f"T{k + 1:04d}") for k in range(terminals)) if terminals > 1 else ()
    )
    for i in range(purchases):
        lane = lanes[i % terminals].id if lanes else ""
        at = (i // terminals) * GAP_MS
        steps.append(
            Step(
                at_ms=at,
                action="purchase",
                card=PANS[i % len(PANS)],
                amount=100 + i % 4_000,
                terminal=lane,
            )
        )
        if (i // terminals) % BATCH_EVERY == BATCH_EVERY - 1:
            # End of a shift: close the batch (the terminal then trims its journal).
            steps.append(Step(at_ms=at + GAP_MS // 2, action="batch_close", terminal=lane))
    plan: list[faults.Fault] = []
    if faulty:
        # Spread up to 250 faults evenly over the run: lost answers, lost requests,
        # jams, duplicates, slow host, power cuts.
        kinds = [
            ("drop", {"direction": "to_terminal", "mti": "0210"}),
            ("drop", {"direction": "to_host", "mti": "0200"}),
            ("printer_jam", {}),
            ("duplicate", {"direction": "to_host", "mti": "0200"}),
            ("slow_host", {"extra_ms": 16_000}),
            ("power_cut", {"after": "send", "mti": "0200"}),
        ]
        per_kind = max(1, min(40, purchases // 50))
        for k, (kind, params) in enumerate(kinds):
            for j in range(per_kind):
                nth = 1 + (j * purchases) // per_kind + k
                plan.append(faults.build_fault(kind, {**params, "nth": nth}))
    return Scenario(
        name=f"bench-{purchases}-{'faulty' if faulty else 'clean'}"
        + (f"-{terminals}-terminals" if lanes else ""),
        seed=1,
        cards=tuple(CardSpec(pan=p, balance=10**12) for p in PANS),
        steps=tuple(steps),
        faults=tuple(plan),
        expect=Expect(invariants=INVARIANT_NAMES),
        max_ms=purchases * GAP_MS + 3_600_000,
        terminals=lanes,
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(
    purchases: int, faulty: bool, trace: bool, host_db: str, terminals: int = 1
) -> dict[str, object]:
    sc = bench_scenario(purchases, faulty, terminals)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = run_scenario(sc, trace_path=Path(tmp) / "t.jsonl" if trace else None, host_db=host_db)
        wall = time.perf_counter() - t0
        size = (Path(tmp) / "t.jsonl").stat().st_size if trace else 0
    return {
        "scenario": sc.name,
        "purchases": r.purchases,
        "trace": trace,
        "wall_s": round(wall, 3),
        "purchases_per_s": round(r.purchases / wall),
        "events_per_s": round(r.events / wall),
        "simulated_h": round(r.sim_ms / 3_600_000, 2),
        "speedup_x": round(r.sim_ms / 1000 / wall),
        "trace_mb": round(size / 1e6, 1),
        "violated": r.violated(),
        "max_rss_mb": round(rss_mb()),
    }


def suite_wall() -> dict[str, object]:
    files = list(find_scenarios([ROOT / "scenarios"]))
    t0 = time.perf_counter()
    n = 0
    for f in files:
        run_scenario(load_scenario(f))
        n += 1
    return {"suite_scenarios": n, "suite_wall_s": round(time.perf_counter() - t0, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purchases", type=int, default=20_000)
    ap.add_argument(
        "--memory", action="store_true", help="one clean run, trace on, host DB on disk"
    )
    ap.add_argument(
        "--terminals", type=int, default=1, help="also a world of N terminals, same purchases"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, object]] = []
    if args.terminals > 1:
        rows.append(run_one(args.purchases, faulty=False, trace=True, host_db=":memory:"))
        rows.append(run_one(args.purchases, False, True, ":memory:", terminals=args.terminals))
    elif args.memory:
        rows.append(run_one(args.purchases, faulty=False, trace=True, host_db=""))
    else:
        rows.append(run_one(args.purchases, faulty=False, trace=False, host_db=":memory:"))
        rows.append(run_one(args.purchases, faulty=False, trace=True, host_db=":memory:"))
        rows.append(run_one(args.purchases, faulty=True, trace=True, host_db=":memory:"))
    extra = {} if args.memory or args.terminals > 1 else suite_wall()
    if args.json:
        print(json.dumps({"runs": rows, **extra}))
        return 0
    cols = [
        "scenario",
        "purchases",
        "trace",
        "wall_s",
        "purchases_per_s",
        "events_per_s",
        "simulated_h",
        "speedup_x",
        "trace_mb",
        "max_rss_mb",
        "violated",
    ]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    for k, v in extra.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
