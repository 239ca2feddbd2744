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
