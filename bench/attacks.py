"""Count the frames the attack properties try: `ATTACK_EXAMPLES=1000 python bench/attacks.py`.

Runs the Hypothesis properties of tests/acquirer/test_attacks.py once each (a failing
property raises, with its counterexample) and prints how many forged, spliced and
hostile frames they fed to the host and the terminal. Every one must be refused.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.acquirer.test_attacks as attacks

PROPERTIES = (
    "test_no_forged_message_is_accepted_by_the_host_or_the_terminal",
    "test_no_byte_level_splice_of_signed_frames_verifies",
    "test_the_mac_input_is_injective",
    "test_moving_text_between_adjacent_fields_changes_the_mac_input",
    "test_any_signed_hostile_request_is_answered_and_leaves_the_ledger_balanced",
)


def main() -> None:
    start = time.perf_counter()
    for name in PROPERTIES:
        getattr(attacks, name)()
    tried = dict(attacks.FRAMES_TRIED)
    elapsed = time.perf_counter() - start
    print(f"frames tried: {tried} (total {sum(tried.values())}), escapes: 0, {elapsed:.0f} s")


if __name__ == "__main__":
    main()
