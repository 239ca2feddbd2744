"""What the exec: pipe costs: purchases per second of the example firmwares in C and
JavaScript against the in-process reference firmware, on the same scenarios, in one
process run (so the ratios are comparable on a shared machine).

    python bench/exec_firmware.py                 # 5,000 purchases, clean + faulty
    python bench/exec_firmware.py --purchases 2000 --rounds 7 --only c

Builds examples/firmware-c first (make). Each run writes its trace and checks every
invariant, as `posharness run` does. The firmwares take turns round by round and the
ratio reported is the median of the rounds' ratios: on a shared, noisy machine that
holds where a best-of figure does not.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def rates(specs: list[str], purchases: int, faulty: bool, rounds: int) -> list[list[float]]:
    """Purchases/s of each spec in each round, the specs interleaved round by round
    (A B C, A B C, ...) so a machine whose speed drifts slows them alike."""
    sc = bench_scenario(purchases, faulty)
    out: list[list[float]] = [[] for _ in specs]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for i, spec in enumerate(specs):
                t0 = time.perf_counter()
                r = run_scenario(sc, spec, trace_path=Path(tmp) / "t.jsonl")
                wall = time.perf_counter() - t0
                assert r.passed, (spec, r.problems[:3])
                out[i].append(r.purchases / wall)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purchases", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated: c, js (default both)")
    args = ap.parse_args()
    fws = firmwares()
    if args.only:
        wanted = {w.strip().lower() for w in args.only.split(",")}
        fws = [fw for fw in fws if fw[1] == "reference" or _short(fw[0]) in wanted]
    print(
        f"{args.purchases:,} purchases, trace on, every invariant; {args.rounds} rounds "
        "interleaved; median purchases/s, and the median of each round's ratio"
    )
    print(f"{'firmware':<24} {'clean /s':>10} {'ratio':>6} {'faulty /s':>10} {'ratio':>6}")
    table = {
        faulty: rates([spec for _, spec in fws], args.purchases, faulty, args.rounds)
        for faulty in (False, True)
    }
    for i, (label, _) in enumerate(fws):
        cells = []
        for faulty in (False, True):
            mine, base = table[faulty][i], table[faulty][0]
            ratio = statistics.median(m / b for m, b in zip(mine, base, strict=True))
            cells.append(f"{statistics.median(mine):>10,.0f} {ratio:>5.2f}x")
        print(f"{label:<24} {cells[0]} {cells[1]}")
    return 0


def _short(label: str) -> str:
    return "c" if label.startswith("C ") else "js"


if __name__ == "__main__":
    sys.exit(main())
