"""The hand-written incident corpus, case by case: `python bench/incident_corpus.py`.

For each log pair in tests/replay/corpus/ (written by hand, not by `incident export`)
prints the request/response pairs matched, the skew estimate against the truth file,
the fault kinds inferred against the true ones, the failure classes the logs show,
and whether the replay reproduces the logged outcome. Exit 1 if any case misses.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.incidents import import_logs
from harness.incidents.parse import parse_tz

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "replay" / "corpus"


def main() -> int:
    misses = 0
    print(f"{'case':<48} {'pairs':>5} {'skew err ms':>11}  faults (inferred = truth?)  reproduced")
    for case in sorted(p for p in CORPUS.iterdir() if (p / "truth.toml").is_file()):
        truth = tomllib.loads((case / "truth.toml").read_text(encoding="utf-8"))
        imp = import_logs(
            case / "terminal.log",
            case / "host.log",
            firmware=truth["firmware"],
            tz=parse_tz(truth["tz"]) if truth.get("tz") else None,
        )
        kinds = sorted({f.KIND for f in imp.scenario.faults})
        same = kinds == sorted(truth["faults"])
        ok = not imp.mismatches and same and sorted(imp.violated) == sorted(truth["violated"])
        misses += not ok
        print(
            f"{case.name[:48]:<48} {imp.pairs:>5} {imp.skew_ms - truth['skew_ms']:>+11}  "
            f"{','.join(kinds) or '-'} ({'yes' if same else 'NO: ' + ','.join(truth['faults'])})"
            f"  {'yes' if ok else 'NO'}"
        )
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
