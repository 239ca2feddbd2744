"""Fuzzing benchmarks: time to first detection and shrunk size per zoo firmware
(median over campaign seeds), and raw examples/s on 10-purchase scenarios.

    python bench/fuzz_bench.py [--seeds 5] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from harness.check import assert_invariants  # noqa: E402
from harness.fuzz import campaign  # noqa: E402
from harness.strategies import scenarios  # noqa: E402
from scenarios.model import Scenario  # noqa: E402
from terminal.zoo import ZOO  # noqa: E402


def detection(seeds: int) -> list[dict[str, object]]:
    rows = []
    for name in ZOO:
        times, sizes, examples, invariants = [], [], [], set()
        for s in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                found, _ = campaign(
                    f"zoo:{name}",
                    profile="dev",
                    examples=5_000,
                    campaign_seed=s,
                    out_dir=Path(tmp),
                    database=None,
                )
            if found is None:
                times.append(float("inf"))
                continue
            times.append(found.detect_s)
            sizes.append(found.scenario.purchases() + len(found.scenario.faults))
            examples.append(found.detect_example)
            invariants.add(found.invariant)
        rows.append(
            {
                "firmware": f"zoo:{name}",
                "median_detect_s": round(statistics.median(times), 2),
                "max_detect_s": round(max(times), 2),
                "median_examples": statistics.median(examples) if examples else None,
                "median_events": statistics.median(sizes) if sizes else None,
                "max_events": max(sizes) if sizes else None,
                "invariants": sorted(invariants),
            }
        )
    return rows


def throughput(examples: int) -> dict[str, object]:
    """Examples/s for scenarios of exactly 10 purchases, every invariant on."""
    count = {"examples": 0, "purchases": 0}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios(purchases=(10, 10)))
    def body(sc: Scenario) -> None:
        count["examples"] += 1
        count["purchases"] += sc.purchases()
        with contextlib.suppress(AssertionError):  # counted all the same: speed is measured
            assert_invariants(sc)

    t0 = time.perf_counter()
    body()
    wall = time.perf_counter() - t0
    return {
        "examples": count["examples"],
        "examples_per_s": round(count["examples"] / wall, 1),
        "purchases_per_s": round(count["purchases"] / wall),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = detection(args.seeds)
    tp = throughput(args.examples)
    if args.json:
        print(json.dumps({"detection": rows, "throughput_10_purchases": tp}))
        return 0
    print(
        "firmware | median s to detect | max s | median examples | median events"
        " | max events | invariant"
    )
    for r in rows:
        print(
            " | ".join(
                str(r[k])
                for k in (
                    "firmware",
                    "median_detect_s",
                    "max_detect_s",
                    "median_examples",
                    "median_events",
                    "max_events",
                    "invariants",
                )
            )
        )
    print(f"10-purchase scenarios: {tp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
