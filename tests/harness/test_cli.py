"""The command line: exit codes, the table, list --json, JUnit, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = ROOT / "scenarios" / "incidents"


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
    assert set(data) == {"scenarios", "firmwares", "faults", "invariants"}
    assert data["firmwares"][0] == "reference"
    assert "zoo:naive-retry" in data["firmwares"]
    assert "partition" in data["faults"] and "no-duplicate-charge" in data["invariants"]
    assert len(data["scenarios"]) >= 24


def test_list_table_mentions_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(INCIDENTS)]) == 0
    out = capsys.readouterr().out
    for title in ("scenarios", "firmwares", "fault kinds", "invariants"):
        assert title in out
