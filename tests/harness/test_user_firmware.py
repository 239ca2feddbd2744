"""A user's own firmware plugs in as module:Class; a broken one is contained."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import run_scenario
from scenarios.loader import load_scenario

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"

USER_FW = textwrap.dedent(
    '''
    from terminal.reference import ReferenceFirmware
    from terminal.firmware import Send


    class MyFirmware(ReferenceFirmware):
        """A user's firmware: the reference, unchanged."""


    class Garbage:
        """Returns something that is not an effect."""

        def __init__(self, config):
            pass

        def handle(self, event):
            return ["not an effect"]


    class Explodes:
        """Raises on the first card tap."""

        def __init__(self, config):
            self.inner = ReferenceFirmware(config)

        def handle(self, event):
            if type(event).__name__ == "CardPresented":
                raise RuntimeError("boom")
            return self.inner.handle(event)
    '''
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "userfw_posh_test.py").write_text(USER_FW)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userfw_posh_test"
    sys.modules.pop("userfw_posh_test", None)


def test_user_firmware_runs_like_the_reference(user_module: str) -> None:
    sc = load_scenario(INCIDENTS / "dup-response-lost-retry.toml")
    r = run_scenario(sc, f"{user_module}:MyFirmware")
    assert r.passed, r.problems
    assert r.firmware == f"{user_module}:MyFirmware"


@pytest.mark.parametrize("cls", ["Garbage", "Explodes"])
def test_broken_firmware_is_a_crash_not_a_harness_traceback(
    user_module: str, cls: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", f"{user_module}:{cls}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "firmware crashed" in out
    assert "Traceback" not in out


def test_module_in_the_current_directory_loads_without_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--firmware mod:Class` run from the module's own directory finds the module."""
    (tmp_path / "cwdfw_posh_test.py").write_text(USER_FW)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        code = main(
            ["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", "cwdfw_posh_test:MyFirmware"]
        )
    finally:
        sys.modules.pop("cwdfw_posh_test", None)
    assert code == 0, capsys.readouterr().out


def test_firmware_from_a_file_path_loads_and_its_siblings_import(tmp_path: Path) -> None:
    """`--firmware path/to/file.py:Class` loads that file; it may import its neighbours."""
    fwdir = tmp_path / "vendor"
    fwdir.mkdir()
    (fwdir / "helpers_posh_test.py").write_text("BASE = 'reference'\n")
    (fwdir / "fw.py").write_text("import helpers_posh_test\n" + USER_FW)
    sc = load_scenario(INCIDENTS / "dup-response-lost-retry.toml")
    try:
        r = run_scenario(sc, f"{fwdir / 'fw.py'}:MyFirmware")
    finally:
        sys.modules.pop("helpers_posh_test", None)
    assert r.passed, r.problems


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no/such/file.py:Fw", "no such file"),
        ("nosuchmodule_posh_test:Fw", "cannot import 'nosuchmodule_posh_test'"),
    ],
)
def test_a_firmware_that_cannot_load_is_one_line_exit_2(
    spec: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", spec])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2
    assert words in text
    assert "Traceback" not in text


def test_a_broken_file_firmware_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.py").write_text("raise ValueError('vendor bug')\n")
    code = main(["run", str(INCIDENTS / "fault-drop.toml"), "--firmware", f"{tmp_path}/bad.py:X"])
    captured = capsys.readouterr()
    assert code == 2
    assert "ValueError: vendor bug" in captured.out + captured.err


def test_assert_invariants_reproducer_names_the_firmware_that_ran(user_module: str) -> None:
    from harness.check import InvariantViolated, assert_invariants

    sc = load_scenario(INCIDENTS / "dup-response-lost-retry.toml")
    with pytest.raises(InvariantViolated) as info:
        assert_invariants(sc, "zoo:naive-retry")
    assert 'firmware = "zoo:naive-retry"' in str(info.value)
    assert 'firmware = "reference"' not in str(info.value)
