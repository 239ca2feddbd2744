"""Host-side defects (host_lose_reversal, host_foreign_rrn): the simulated host
misbehaves as field hosts have, the invariants name what it costs, and an incident
import of the logs infers the defect and reproduces the outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.incidents import import_logs, trace_to_logs
from harness.runner import run_scenario
from scenarios.loader import load_scenario

CARD = '[[cards]]\npan = "4000000000000002"\nbalance = 100000\n'


def _sale(at_ms: int, amount: int) -> str:
    card = '"4000000000000002"'
    return f"[[steps]]\nat_ms = {at_ms}\npurchase = {{ card = {card}, amount = {amount} }}\n"


LOST_REVERSAL = (
    'name = "lost-reversal"\n'
    + CARD
    + _sale(0, 1250)
    + '[[faults]]\ndrop = { direction = "to_terminal", mti = "0210", nth = 1, count = 2 }\n'
    # The status inquiry's answer is lost too: the terminal reverses.
    + '[[faults]]\ndrop = { direction = "to_terminal", mti = "0610", nth = 1 }\n'
    + "[[faults]]\nhost_lose_reversal = { nth = 1 }\n"
)
FOREIGN_RRN = (
    'name = "foreign-rrn"\n'
    + CARD
    + _sale(0, 1250)
    + _sale(60_000, 799)
    + "[[faults]]\nhost_foreign_rrn = { nth = 2 }\n"
)


def _run(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    src = tmp_path / "sc.toml"
    src.write_text(text + '[expect]\ninvariants = "all"\n', encoding="utf-8")
    trace = tmp_path / "trace.jsonl"
    result = run_scenario(load_scenario(src), "reference", trace_path=trace)
    return trace, result.violated()


def _records(trace: Path, kind: str) -> list[dict[str, object]]:
    out = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("kind") == kind:
            out.append(rec)
    return out


def test_a_lost_reversal_leaves_the_card_charged_while_the_terminal_shows_failed(
    tmp_path: Path,
) -> None:
    trace, violated = _run(tmp_path, LOST_REVERSAL)
    assert "no-charge-on-failure" in violated
    actions = [r["action"] for r in _records(trace, "host")]
    assert "reversal-lost" in actions and "reverse" not in actions


def test_a_foreign_rrn_answers_the_sale_with_the_previous_sales_reference(
    tmp_path: Path,
) -> None:
    trace, violated = _run(tmp_path, FOREIGN_RRN)
    charged = [r["rrn"] for r in _records(trace, "host") if r["action"] == "charge"]
    printed = [r["receipt"]["rrn"] for r in _records(trace, "print") if "receipt" in r]
    assert len(charged) == 2 and printed == [charged[0], charged[0]]
    assert violated  # a receipt naming another sale's charge never passes


@pytest.mark.parametrize(
    ("text", "kind"),
    [(LOST_REVERSAL, "host_lose_reversal"), (FOREIGN_RRN, "host_foreign_rrn")],
)
def test_the_defect_is_inferred_from_the_logs_and_reproduced(
    tmp_path: Path, text: str, kind: str
) -> None:
    trace, violated = _run(tmp_path, text)
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log", 870)
    imported = import_logs(tmp_path / "t.log", tmp_path / "h.log")
    assert imported.mismatches == []
    original = load_scenario(tmp_path / "sc.toml")
    assert [f for f in imported.scenario.faults if kind == f.KIND] == [
        f for f in original.faults if kind == f.KIND
    ]
    assert sorted(imported.violated) == sorted(violated)
