"""The command line: exit codes, the table, list --json, JUnit, bad input."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from scenarios.loader import find_scenarios

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = ROOT / "scenarios" / "incidents"
SUITE = ROOT / "scenarios"


def test_run_passing_scenario_exits_0_and_prints_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "run",
            str(INCIDENTS / "fault-drop.toml"),
            "--junit",
            str(tmp_path / "j.xml"),
            "--trace-dir",
            str(tmp_path / "tr"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for column in ("scenario", "firmware", "verdict", "violated invariants", "simulated", "wall"):
        assert column in out
    assert "fault-drop" in out and "PASS" in out
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    traces = list((tmp_path / "tr").glob("*.jsonl"))
    assert len(traces) == 1


def test_run_zoo_firmware_exits_1_naming_invariant_and_trace_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["run", str(INCIDENTS / "dup-response-lost-retry.toml"), "--firmware", "zoo:naive-retry"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "no-duplicate-charge" in out
    assert "trace lines" in out and "reproduce: posharness run" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "no/such/dir"],
        ["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", "zoo:nope"],
        ["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", "nomodule_xyz:Cls"],
        ["run", "--seed", "notanumber"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err


def test_bad_scenario_file_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[faults]]\ndrop = { nth = -2 }\n')
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert str(bad) in err and "faults[0].drop.nth" in err


def test_list_json_names_scenarios_firmwares_faults_invariants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", str(INCIDENTS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"scenarios", "firmwares", "faults", "invariants", "format"}
    assert data["firmwares"][0] == "reference"
    assert "zoo:naive-retry" in data["firmwares"]
    assert "partition" in data["faults"] and "no-duplicate-charge" in data["invariants"]
    assert len(data["scenarios"]) >= 24


def test_list_table_mentions_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(INCIDENTS)]) == 0
    out = capsys.readouterr().out
    for title in ("scenarios", "firmwares", "fault kinds", "invariants"):
        assert title in out


# ---------------------------------------------------------------- fixed or not

SCENARIOS = ROOT / "scenarios"
RECORDED = SCENARIOS / "recorded"


def test_recorded_incidents_with_the_reference_firmware_are_judged_fixed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The vendor's main job, `scripts/suite --firmware reference`, is green: a
    recorded incident run with another firmware must hold every invariant it names."""
    assert main(["run", str(SCENARIOS), "--firmware", "reference"]) == 0
    out = capsys.readouterr().out
    assert out.count("FIXED") == 7
    assert "FAIL" not in out and "expected" not in out
    assert re.search(r"\d+ passed, 7 fixed, 0 failed", out), out


def test_the_default_suite_still_passes_with_each_files_own_firmware(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", str(SCENARIOS)]) == 0
    out = capsys.readouterr().out
    total = len(list(find_scenarios([SUITE])))
    assert f"{total} passed, 0 failed" in out and "FIXED" not in out


def test_a_flawed_firmware_on_a_recorded_incident_is_still_failing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "run",
            str(RECORDED / "sdk-in-progress-decline" / "scenario.toml"),
            "--firmware",
            "zoo:naive-retry",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "STILL FAILING recorded-sdk-in-progress-decline" in out
    assert "judged fixed-or-not" in out and "no-duplicate-charge:" in out


def test_a_recorded_incident_with_its_own_firmware_is_judged_by_its_expect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same firmware as the file: the incident must reproduce (PASS), not be 'fixed'."""
    path = RECORDED / "lost-response-double-charge" / "scenario.toml"
    assert main(["run", str(path), "--firmware", "zoo:naive-retry"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FIXED" not in out


def test_the_whole_suite_with_a_flawed_firmware_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", str(SCENARIOS), "--firmware", "zoo:naive-retry"]) == 1
    out = capsys.readouterr().out
    assert "still failing" in out and "FAIL " in out


# ---------------------------------------------------------------- faults that never fire

DROP_SCENARIO = """name = "drop-test"
[[cards]]
pan = "4000000000000002"
balance = 10000
[[steps]]
at_ms = 0
purchase = {{ card = "4000000000000002", amount = 1250 }}
[[faults]]
drop = {{ direction = "to_terminal", mti = "{mti}", nth = {nth}{extra} }}
"""


def _drop(tmp_path: Path, mti: str = "0210", nth: int = 1, extra: str = "") -> Path:
    path = tmp_path / "drop.toml"
    path.write_text(DROP_SCENARIO.format(mti=mti, nth=nth, extra=extra))
    return path


def test_a_fault_that_never_applies_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nth = 7 when one 0210 goes to the terminal: a green no-op would hide the typo."""
    assert main(["run", str(_drop(tmp_path, nth=7))]) == 1
    out = capsys.readouterr().out
    assert "faults[0] drop(nth=7, direction=to_terminal, mti=0210) never applied" in out
    assert "optional = true" in out


def test_an_optional_fault_may_never_apply(tmp_path: Path) -> None:
    assert main(["run", str(_drop(tmp_path, nth=7, extra=", optional = true"))]) == 0


def test_a_fault_that_applies_passes(tmp_path: Path) -> None:
    assert main(["run", str(_drop(tmp_path, nth=1))]) == 0


def test_an_unknown_mti_is_refused_at_load_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(_drop(tmp_path, mti="0211"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "faults[0].drop.mti: '0211' is not a message type of the protocol" in err


# ---------------------------------------------------------------- bad files, JUnit

GOOD = (INCIDENTS / "fault-drop.toml").read_text()


def test_one_bad_file_does_not_stop_the_others_and_junit_lists_it_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "a-bad.toml").write_text('name = "x"\n[[faults]]\ndrop = { nth = -2 }\n')
    (suite / "b-good.toml").write_text(GOOD)
    junit = tmp_path / "out" / "junit.xml"
    assert main(["run", str(suite), "--junit", str(junit)]) == 2
    captured = capsys.readouterr()
    assert "a-bad.toml: faults[0].drop.nth: must be >= 0" in captured.err
    assert "Traceback" not in captured.err
    assert "fault-drop" in captured.out and "PASS" in captured.out and "ERROR" in captured.out
    assert "1 bad file not run" in captured.out
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "0", "1")
    assert root.get("skipped") == "0"
    (bad,) = [c for c in root.iter("testcase") if c.find("error") is not None]
    assert bad.get("file", "").endswith("a-bad.toml")
    error = bad.find("error")
    assert error is not None and "must be >= 0" in (error.get("message") or "")


def test_junit_failure_has_readable_lines_reproduce_command_and_trace_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "j.xml"
    traces = tmp_path / "tr"
    code = main(
        [
            "run",
            str(INCIDENTS / "dup-response-lost-retry.toml"),
            "--firmware",
            "zoo:naive-retry",
            "--junit",
            str(junit),
            "--trace-dir",
            str(traces),
        ]
    )
    assert code == 1
    capsys.readouterr()
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert case.get("file", "").endswith("dup-response-lost-retry.toml")
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    text = failure.text
    assert "(trace lines 4, 14, 22)" in text and "[4" not in text
    assert "reproduce: posharness run " in text and "--firmware zoo:naive-retry" in text
    (trace,) = traces.glob("*.jsonl")
    assert f"trace: {trace}" in text
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["trace"] == str(trace) and props["verdict"] == "FAIL"


# ---------------------------------------------------------------- output


def test_piped_reproduce_line_is_never_wrapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path longer than any console: the reproduce command stays one line."""
    deep = tmp_path / ("a-very-long-directory-name-" * 6) / "more"
    deep.mkdir(parents=True)
    path = deep / "dup.toml"
    path.write_text((INCIDENTS / "dup-response-lost-retry.toml").read_text())
    assert main(["run", str(path), "--firmware", "zoo:naive-retry"]) == 1
    lines = capsys.readouterr().out.splitlines()
    (repro,) = [line for line in lines if "reproduce:" in line]
    assert len(repro) > 200
    assert repro.strip() == (
        f"reproduce: posharness run {path} --firmware zoo:naive-retry --seed 1 --trace-dir traces"
    )


def test_at_80_columns_names_are_never_split(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from harness.report import results_table
    from harness.runner import run_scenario
    from scenarios.loader import find_scenarios, load_scenario

    results = [run_scenario(load_scenario(p), "reference") for p in find_scenarios([str(RECORDED)])]
    console = Console(width=80, force_terminal=True, record=True)
    results_table(results, console)
    text = console.export_text()
    for r in results:
        assert r.scenario.name in text
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_same_named_scenarios_keep_separate_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "s.toml").write_text(GOOD)
    traces = tmp_path / "tr"
    assert (
        main(["run", str(tmp_path / "one"), str(tmp_path / "two"), "--trace-dir", str(traces)]) == 0
    )
    names = sorted(p.name for p in traces.glob("*.jsonl"))
    assert names == ["fault-drop--reference--0.jsonl", "fault-drop--reference--0-2.jsonl"] or (
        len(names) == 2 and names[0] != names[1]
    )


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert main(["run", str(path)]) == 0


def test_a_boolean_where_a_number_belongs_is_quoted_as_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.toml"
    path.write_text(GOOD.replace("balance = 100000", "balance = true", 1))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "got true" in err and "True" not in err


# ---------------------------------------------------------------- CLI surface


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("posharness ")


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["run", "--help"], ["exit status:", "FIXED", "STILL FAILING", "index.html"]),
        (["fuzz", "--help"], ["exit status:", "(default: ci)", "counted from 0", "(default 0)"]),
        (["list", "--help"], ["exit status:"]),
        (["replay", "--help"], ["exit status:"]),
        (["fleet", "--help"], ["exit status:", "(default: 10)", "(default: iso8583)"]),
    ],
)
def test_help_states_exit_codes_and_defaults(
    argv: list[str], wanted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps help text
    for text in wanted:
        assert " ".join(text.split()) in out, text


def test_list_and_run_outside_the_repo_use_the_same_packaged_scenarios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["scenarios"]
    total = len(list(find_scenarios([SUITE])))
    assert len(listed) == total
    assert main(["run"]) == 0
    assert f"{total} scenarios: {total} passed" in capsys.readouterr().out


def test_replay_of_a_scenario_file_suggests_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = INCIDENTS / "fault-drop.toml"
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"posharness run {path}" in err


def test_fleet_report_prints_outcomes_as_words_not_a_dict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    from harness.mqtt.cli import print_report

    j = {
        "completed": 3,
        "offered": 3,
        "outcomes": {"declined": 1, "approved": 2},
        "throughput_per_s": 3.0,
        "latency_ms": {"p50": 1, "p95": 2, "p99": 3},
        "retries": 0,
        "reversals": 0,
        "fleet_cpu_s": 0.1,
        "host_cpu_s": None,
    }
    print_report(SimpleNamespace(to_json=lambda: j, invariants={}))
    out = capsys.readouterr().out
    assert "(2 approved, 1 declined)" in out and "{" not in out
