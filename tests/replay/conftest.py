"""Shared helpers for the replay, incident and timeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner import run_scenario
from scenarios.loader import load_scenario

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "scenarios" / "recorded"


def record(tmp: Path, scenario: str, firmware: str | None = None) -> Path:
    """Run a built-in scenario and return the path of its trace."""
    sc = load_scenario(ROOT / scenario)
    out = tmp / "trace.jsonl"
    run_scenario(sc, firmware, trace_path=out)
    return out


@pytest.fixture
def naive_retry_trace(tmp_path: Path) -> Path:
    return record(tmp_path, "scenarios/incidents/dup-response-lost-retry.toml", "zoo:naive-retry")
