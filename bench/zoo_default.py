"""Does the default `posharness fuzz --firmware F` find every zoo firmware?

Runs the default campaign (what `posharness fuzz --firmware zoo:NAME --seed S` does
with no other option: the default profile and time budget) for every zoo firmware
and every seed, and prints the time to the first failing example, the examples it
took, and the invariant. A miss is a row with `MISSED`.

    python bench/zoo_default.py [--seeds 10] [--firmware zoo:NAME ...] [--budget S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.fuzz import DEFAULT_BUDGET_S, campaign  # noqa: E402
from terminal.zoo import ZOO  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="campaign seeds 0..N-1 (default 10)")
    ap.add_argument("--firmware", action="append", help="only this firmware (repeatable)")
    ap.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds per campaign (default: the fuzz default, {DEFAULT_BUDGET_S:.0f})",
    )
    args = ap.parse_args()
    names = args.firmware or [f"zoo:{n}" for n in ZOO]
    started = time.perf_counter()
    misses = 0
    print(f"{'firmware':28} {'found':>5} {'median s':>9} {'max s':>7} {'max ex':>7}  invariants")
    for fw in names:
        times: list[float] = []
        examples: list[int] = []
        invariants: set[str] = set()
        missed: list[int] = []
        for s in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                found, _ = campaign(fw, budget_s=args.budget, campaign_seed=s, out_dir=Path(tmp))
            if found is None:
                missed.append(s)
                continue
            times.append(found.detect_s)
            examples.append(found.detect_example)
            invariants.add(found.invariant)
        misses += len(missed)
        med = f"{statistics.median(times):9.2f}" if times else f"{'-':>9}"
        mx = f"{max(times):7.2f}" if times else f"{'-':>7}"
        mex = f"{max(examples):7d}" if examples else f"{'-':>7}"
        miss = f"  MISSED seeds {missed}" if missed else ""
        print(
            f"{fw:28} {len(times):>2}/{args.seeds:<2} {med} {mx} {mex}  "
            f"{', '.join(sorted(invariants))}{miss}",
            flush=True,
        )
    print(
        f"{len(names)} firmwares x {args.seeds} seeds: {misses} missed; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
