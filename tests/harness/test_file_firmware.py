"""Files cannot choose code: scenario, trace and log files may name only the firmwares
posharness ships; `module:Class` comes from the command line or needs
`--allow-external-firmware`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import allow_external_firmware

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


@pytest.fixture(autouse=True)
def _policy_reset() -> Iterator[None]:
    yield
    allow_external_firmware(False)


def _scenario_naming(tmp_path: Path, firmware: str) -> Path:
    text = (INCIDENTS / "fault-drop.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("firmware")]
    path = tmp_path / "hostile.toml"
    path.write_text(f'firmware = "{firmware}"\n' + "\n".join(lines) + "\n")
    return path


def test_a_scenario_naming_sys_exit_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`firmware = "sys:exit"` used to end the process, printing the FirmwareConfig with
    its MAC key; now nothing is imported and the file is reported, exit 2."""
    path = _scenario_naming(tmp_path, "sys:exit")
    code = main(["run", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2
    assert "names code outside posharness" in text
    assert "mac_key" not in text and "FirmwareConfig" not in text
    assert "Traceback" not in text


def test_the_same_firmware_given_on_the_command_line_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fwfile_posh_test.py").write_text(
        "from terminal.reference import ReferenceFirmware as Mine\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _scenario_naming(tmp_path, "fwfile_posh_test:Mine")
    try:
        assert main(["run", str(path)]) == 2
        assert main(["run", str(path), "--firmware", "fwfile_posh_test:Mine"]) == 0
        assert main(["run", str(path), "--allow-external-firmware"]) == 0
    finally:
        sys.modules.pop("fwfile_posh_test", None)


def test_a_trace_header_naming_outside_code_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(INCIDENTS / "fault-drop.toml"), "--trace-dir", str(tmp_path)]) == 0
    trace = next(tmp_path.glob("*.jsonl"))
    lines = trace.read_text().splitlines()
    head = json.loads(lines[0])
    head["firmware"] = "os:system"
    trace.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    capsys.readouterr()
    code = main(["replay", str(trace)])
    out = capsys.readouterr()
    assert code == 2
    assert "names code outside posharness" in out.out + out.err


def test_an_incident_log_header_never_chooses_code() -> None:
    """A log header naming `sys:exit` imports nothing: the import runs the reference and
    says why."""
    from harness.incidents.build import _firmware

    notes: list[str] = []
    assert _firmware(None, {"firmware": "sys:exit"}, notes) == "reference"
    assert notes and "sys:exit" in notes[0]
    assert _firmware(None, {"firmware": "zoo:naive-retry"}, []) == "zoo:naive-retry"
