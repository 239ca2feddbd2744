"""What the exec: pipe costs: purchases per second of the example firmwares in C and
JavaScript against the in-process reference firmware, on the same scenarios, in one
process run (so the ratios are comparable on a shared machine).

    python bench/exec_firmware.py                 # 5,000 purchases, clean + faulty
    python bench/exec_firmware.py --purchases 20000 --rounds 3

Builds examples/firmware-c first (make). Each run writes its trace and checks every
invariant, as `posharness run` does; the best of --rounds runs is reported.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import bench_scenario  # noqa: E402

from harness.runner import run_scenario  # noqa: E402


def firmwares() -> list[tuple[str, str]]:
    out = [("reference (in process)", "reference")]
    if shutil.which("make") and Path("/usr/include/cjson/cJSON.h").exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "examples/firmware-c")], check=True)
        out.append(("C (exec:)", f"exec:{ROOT / 'examples/firmware-c/build/firmware'}"))
    if shutil.which("node"):
        out.append(("JavaScript (exec:)", f"exec:node {ROOT / 'examples/firmware-js/firmware.js'}"))
    return out


def rate(spec: str, purchases: int, faulty: bool, rounds: int) -> tuple[float, float]:
    """Best purchases/s over `rounds` runs, and the CPU seconds of that run's process."""
    sc = bench_scenario(purchases, faulty)
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = run_scenario(sc, spec, trace_path=Path(tmp) / "t.jsonl")
            wall = time.perf_counter() - t0
            assert r.passed, (spec, r.problems[:3])
            best = max(best, r.purchases / wall)
    return best, 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purchases", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    fws = firmwares()
    print(f"{args.purchases:,} purchases, trace on, every invariant; best of {args.rounds}")
    print(f"{'firmware':<24} {'clean /s':>10} {'ratio':>6} {'faulty /s':>10} {'ratio':>6}")
    base: dict[bool, float] = {}
    for label, spec in fws:
        cells = []
        for faulty in (False, True):
            per_s, _ = rate(spec, args.purchases, faulty, args.rounds)
            base.setdefault(faulty, per_s)
            cells.append(f"{per_s:>10,.0f} {per_s / base[faulty]:>5.2f}x")
        print(f"{label:<24} {cells[0]} {cells[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
