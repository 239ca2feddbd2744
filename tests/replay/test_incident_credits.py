"""Incident logs of the cashier's voids and refunds and of offline sales: export then
import reproduces the same outcome, with the reference and with each zoo firmware that
the scenario catches; bad credit lines are one clear line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.incidents import import_logs, trace_to_logs
from harness.runner import run_scenario
from scenarios.loader import load_scenario

from .cases import catching_cases, export_run
from .test_incident import _import_cli

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
from test_incidents import CAUGHT_BY  # noqa: E402

PREFIXES = ("refund-", "void-", "offline-")
SCENARIOS = sorted(
    p for p in (ROOT / "scenarios" / "incidents").glob("*.toml") if p.name.startswith(PREFIXES)
)
ZOOS = sorted("zoo:" + z for z in CAUGHT_BY if z.startswith(("refund", "void", "offline")))


def _round_trip(path: Path, firmware: str, tmp_path: Path, strip_config: bool = False) -> None:
    t_log, h_log, violated = export_run(path, firmware, tmp_path)
    if strip_config:  # a field log whose header does not give the terminal's settings
        lines = t_log.read_text().splitlines()
        head = json.loads(lines[0])
        head["config"] = {}
        t_log.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    imported = import_logs(t_log, h_log)
    assert imported.problems == [] and imported.unexplained == []
    assert imported.mismatches == [], imported.mismatches
    replay = run_scenario(imported.scenario, firmware)
    assert sorted(replay.violated()) == violated


CASES = catching_cases(SCENARIOS, ZOOS, CAUGHT_BY)


def test_every_credit_and_offline_zoo_firmware_is_in_a_case() -> None:
    assert {fw for _, fw in CASES} == {"reference", *ZOOS}
    assert len(SCENARIOS) >= 10


@pytest.mark.parametrize(("path", "firmware"), CASES, ids=[f"{p.stem}-{f}" for p, f in CASES])
def test_export_then_import_reproduces_the_outcome(
    path: Path, firmware: str, tmp_path: Path
) -> None:
    _round_trip(path, firmware, tmp_path)


@pytest.mark.parametrize(
    "name", ["offline-upload-ack-lost", "offline-late-decline", "offline-upload-before-batch"]
)
def test_offline_floor_is_inferred_when_the_header_gives_none(name: str, tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "incidents" / f"{name}.toml"
    fw = next(f for p, f in CASES if p == path and f != "reference")
    _round_trip(path, fw, tmp_path, strip_config=True)


def test_refund_is_imported_as_a_refund_step_naming_the_sale(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "incidents" / "refund-response-lost-retry.toml"
    trace = tmp_path / "run.jsonl"
    run_scenario(load_scenario(path), "zoo:refund-new-key-on-retry", trace_path=trace)
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log")
    sc = import_logs(tmp_path / "t.log", tmp_path / "h.log").scenario
    refunds = [s for s in sc.steps if s.action == "refund"]
    assert [(s.sale, s.amount) for s in refunds] == [(1, 3000)]
    assert "no-over-credit" in run_scenario(sc).violated()
    assert run_scenario(sc, "reference").violated() == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"key":"refund","rrn":"000000000001"',
            '"key":"refund","rrn":"999999999999"',
            "no approved sale",
        ),
        ('"key":"refund","rrn":"000000000001"', '"key":"refund"', "needs the sale's rrn"),
        ('"amount":3000}', '"amount":-5}', "refund amount must be an integer"),
    ],
)
def test_a_bad_credit_key_is_one_line_exit_2(
    old: str, new: str, message: str, tmp_path: Path
) -> None:
    path = ROOT / "scenarios" / "incidents" / "refund-response-lost-retry.toml"
    trace = tmp_path / "run.jsonl"
    run_scenario(load_scenario(path), "zoo:refund-new-key-on-retry", trace_path=trace)
    t_log, h_log = tmp_path / "t.log", tmp_path / "h.log"
    trace_to_logs(trace, t_log, h_log)
    text = t_log.read_text()
    assert old in text
    t_log.write_text(text.replace(old, new, 1))
    code, err = _import_cli(tmp_path, t_log, h_log)
    assert code == 2 and len(err) == 1 and message in err[0], err
