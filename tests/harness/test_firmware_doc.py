"""The from-scratch firmware in docs/firmware.md runs exactly as the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "firmware.md"


def _skeleton() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- skeleton:.*?-->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/firmware.md lost its skeleton block"
    return match.group(1)


@pytest.fixture
def skeleton(tmp_path: Path) -> str:
    path = tmp_path / "skeleton_fw.py"
    path.write_text(_skeleton(), encoding="utf-8")
    return f"{path}:SkeletonFirmware"


def test_the_skeleton_passes_a_lost_answer(
    skeleton: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(ROOT / "scenarios/incidents/fault-drop.toml"), "--firmware", skeleton])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("scenario", "invariant"),
    [
        ("no-receipt-printer-jam", "receipt-for-every-charge"),
        ("fault-power_cut", "receipt-for-every-charge"),
    ],
)
def test_the_skeleton_misses_what_the_page_says_it_misses(
    skeleton: str, capsys: pytest.CaptureFixture[str], scenario: str, invariant: str
) -> None:
    path = ROOT / "scenarios" / "incidents" / f"{scenario}.toml"
    code = main(["run", str(path), "--firmware", skeleton])
    out = capsys.readouterr().out
    assert code == 1
    assert invariant in out
    assert "firmware crashed" not in out
