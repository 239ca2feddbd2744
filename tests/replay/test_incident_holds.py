"""Incident logs of pre-authorisations, completions and tip adjusts: export then
import reproduces the same outcome, with the reference and with each zoo firmware that
the scenario catches; the logs alone name what the replay violates; bad lines are one
clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.incidents import import_logs
from harness.runner import run_scenario

from .cases import catching_cases, export_run
from .test_incident import _import_cli

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
from test_incidents import CAUGHT_BY  # noqa: E402

PREFIXES = ("preauth-", "tip-")
SCENARIOS = sorted(
    p for p in (ROOT / "scenarios" / "incidents").glob("*.toml") if p.name.startswith(PREFIXES)
)
ZOOS = sorted("zoo:" + z for z in CAUGHT_BY if z.startswith(("completion", "tip")))


CASES = catching_cases(SCENARIOS, ZOOS, CAUGHT_BY)


def test_every_hold_and_tip_zoo_firmware_is_in_a_case() -> None:
    assert set(ZOOS) == {
        "zoo:completion-new-key-on-retry",
        "zoo:completion-before-answer",
        "zoo:tip-added-twice",
        "zoo:tip-after-batch-close",
    }
    assert {fw for _, fw in CASES} == {"reference", *ZOOS}
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize(("path", "firmware"), CASES, ids=[f"{p.stem}-{f}" for p, f in CASES])
def test_export_then_import_reproduces_the_outcome(
    path: Path, firmware: str, tmp_path: Path
) -> None:
    t_log, h_log, violated = export_run(path, firmware, tmp_path)
    imported = import_logs(t_log, h_log)
    assert imported.problems == [] and imported.unexplained == []
    assert imported.mismatches == [], imported.mismatches
    assert sorted(imported.violated) == violated
    replay = run_scenario(imported.scenario, firmware)
    assert sorted(replay.violated()) == violated
    # The logs alone name what the run broke (before any replay).
    assert sorted(imported.logged_violations) == violated, imported.logged_violations
    if firmware != "reference":
        assert CAUGHT_BY[firmware[4:]] in violated


def test_hotel_stay_imports_a_preauth_a_completion_and_a_tip(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "incidents" / "preauth-hotel-stay.toml"
    t_log, h_log, _ = export_run(path, "reference", tmp_path)
    text = t_log.read_text()
    assert '"event":"amount_keyed","amount":30000,"preauth":true' in text
    assert '"key":"complete","rrn":"000000000001","amount":26000' in text
    assert '"key":"tip","rrn":"000000000003","tip":2000' in text
    imported = import_logs(t_log, h_log)
    sc = imported.scenario
    assert [s.action for s in sc.steps] == ["preauth", "purchase", "batch_close", "complete", "tip"]
    assert [(s.sale, s.amount) for s in sc.steps if s.action in ("complete", "tip")] == [
        (1, 26000),
        (1, 2000),
    ]
    # 0220s naming orig_key are completions and tips, not offline advices.
    assert sc.terminal.offline_floor == 0
    assert imported.logged_violations == {}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"preauth":true', '"preauth":"yes"', "preauth must be true or false"),
        ('"key":"complete","rrn":"000000000001"', '"key":"complete"', "needs the hold's rrn"),
        (
            '"key":"complete","rrn":"000000000001","amount":26000',
            '"key":"complete","rrn":"000000000001","amount":-1',
            "amount must be an integer >= 0",
        ),
        ('"tip":2000}', '"tip":"20.00"}', "tip must be an integer >= 0"),
        ('"key":"tip","rrn":"000000000003"', '"key":"tip","rrn":"999"', "no approved sale"),
    ],
)
def test_a_bad_hold_line_is_one_line_exit_2(
    old: str, new: str, message: str, tmp_path: Path
) -> None:
    path = ROOT / "scenarios" / "incidents" / "preauth-hotel-stay.toml"
    t_log, h_log, _ = export_run(path, "reference", tmp_path)
    text = t_log.read_text()
    assert text.count(old) == 1
    t_log.write_text(text.replace(old, new, 1))
    code, err = _import_cli(tmp_path, t_log, h_log)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert f"{t_log}:" in err[0]


@pytest.mark.parametrize(
    ("old", "new", "found"),
    [
        # COMPLETED shown for another amount than the host captured.
        (
            '"text":"COMPLETED","rrn":"000000000001","amount":26000',
            '"text":"COMPLETED","rrn":"000000000001","amount":25000',
            {"amount-integrity": "shown COMPLETED for 25000, captured 26000"},
        ),
        # The cashier asked to capture less than the host captured.
        (
            '"key":"complete","rrn":"000000000001","amount":26000',
            '"key":"complete","rrn":"000000000001","amount":24000',
            {"amount-integrity": "asked to capture 24000"},
        ),
        # TIP ADDED shown with a total the host never adjusted the sale to.
        (
            '"rrn":"000000000003","amount":28000}',
            '"rrn":"000000000003","amount":29000}',
            {
                "approved-means-charged": "adjusted it to 28000",
                "amount-integrity": "total of 29000: not its 26000 plus a tip",
            },
        ),
        # The cashier keyed another tip than the host holds.
        (
            '"tip":2000}',
            '"tip":1500}',
            {"amount-integrity": "tip of 2000 on sale rrn 000000000003, not a tip"},
        ),
    ],
)
def test_the_logs_alone_judge_completions_and_tips(
    old: str, new: str, found: dict[str, str], tmp_path: Path
) -> None:
    path = ROOT / "scenarios" / "incidents" / "preauth-hotel-stay.toml"
    t_log, h_log, _ = export_run(path, "reference", tmp_path)
    text = t_log.read_text()
    assert text.count(old) == 1
    t_log.write_text(text.replace(old, new, 1))
    logged = import_logs(t_log, h_log, verify=False).logged_violations
    assert sorted(logged) == sorted(found), logged
    for name, words in found.items():
        assert any(words in f for f in logged[name]), logged[name]


def test_hotel_corpus_pair_is_a_completion_captured_but_shown_refused() -> None:
    folder = next((Path(__file__).parent / "corpus").glob("c18-*"))
    imported = import_logs(
        folder / "terminal.log", folder / "host.log", firmware="zoo:completion-new-key-on-retry"
    )
    steps = imported.scenario.steps
    assert [(s.action, s.sale, s.amount) for s in steps] == [
        ("preauth", 0, 45000),
        ("complete", 1, 38640),
    ]
    assert imported.scenario.terminal.offline_floor == 0
    assert any(
        "captured 38640 of pre-authorisation rrn 433714120871" in f
        for f in imported.logged_violations["no-charge-on-failure"]
    )
    assert run_scenario(imported.scenario, "reference").violated() == []


def test_a_completion_the_log_never_shows_done_is_a_replay_difference(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "incidents" / "preauth-hotel-stay.toml"
    t_log, h_log, _ = export_run(path, "reference", tmp_path)
    lines = t_log.read_text().splitlines(keepends=True)
    kept = [line for line in lines if '"outcome":"completed"' not in line]
    assert len(kept) == len(lines) - 1
    t_log.write_text("".join(kept))
    imported = import_logs(t_log, h_log)
    assert any("display completed rrn R1" in m for m in imported.mismatches), imported.mismatches
    assert "no-charge-on-failure" in imported.logged_violations


def _to_csv(jsonl: Path, out: Path) -> None:
    """A JSON-lines log as the plain CSV export the `csv` adapter reads."""
    import csv
    import json

    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v) if isinstance(v, dict | list) else str(v)

    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([cell(r[c]) if c in r else "" for c in columns])


def test_a_csv_export_of_a_hotel_stay_imports_the_same(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "incidents" / "preauth-hotel-stay.toml"
    t_log, h_log, _ = export_run(path, "reference", tmp_path)
    t_csv, h_csv = tmp_path / "t.csv", tmp_path / "h.csv"
    _to_csv(t_log, t_csv)
    _to_csv(h_log, h_csv)
    imported = import_logs(t_csv, h_csv, fmt="csv")
    assert imported.problems == [] and imported.mismatches == [], imported.mismatches
    assert imported.scenario.steps == import_logs(t_log, h_log, verify=False).scenario.steps
    assert [s.action for s in imported.scenario.steps] == [
        "preauth",
        "purchase",
        "batch_close",
        "complete",
        "tip",
    ]
