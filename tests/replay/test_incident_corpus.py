"""The hand-written incident corpus (tests/replay/corpus/): field-style log pairs
with jitter, real RRNs, time zones, clock steps, masked PANs, missing power-off lines
and a host-side fault, written by hand (not by `incident export`). Each must import,
name its failure class from the logs alone, and reproduce it in the replay."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.incidents import import_logs
from harness.incidents.parse import parse_tz
from harness.runner import run_scenario

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "truth.toml").is_file())
# Asymmetric GPRS delays make the NTP-style offset wrong by half the asymmetry; the
# corpus has up to ~800 ms of it.
SKEW_ERROR_MAX_MS = 500


def _truth(case: str) -> dict[str, Any]:
    return tomllib.loads((CORPUS / case / "truth.toml").read_text(encoding="utf-8"))


def _import(case: str) -> Any:
    truth = _truth(case)
    folder = CORPUS / case
    return import_logs(
        folder / "terminal.log",
        folder / "host.log",
        firmware=truth["firmware"],
        tz=parse_tz(truth["tz"]) if truth.get("tz") else None,
    )


def test_the_corpus_has_at_least_twelve_pairs() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES)
def test_corpus_pair_imports_names_its_failure_class_and_reproduces(case: str) -> None:
    truth = _truth(case)
    imported = _import(case)
    assert imported.problems == []
    assert imported.mismatches == [], imported.mismatches
    # The logs alone name the failure class, and the replay shows the same.
    assert sorted(imported.logged_violations) == sorted(truth["violated"])
    assert sorted(imported.violated) == sorted(truth["violated"])
    # The inferred fault kinds are the ones that happened (no jitter noise).
    assert sorted({f.KIND for f in imported.scenario.faults}) == sorted(truth["faults"])
    assert abs(imported.skew_ms - truth["skew_ms"]) <= SKEW_ERROR_MAX_MS
    if "clock_step_ms" in truth:
        assert f"stepped {truth['clock_step_ms']:+d} ms" in imported.clock_steps[0]
    else:
        assert imported.clock_steps == []
    if truth.get("retry"):
        assert imported.scenario.people.retry_on_failed >= 1
    assert imported.scenario.host.test_amounts is False  # real amounts stay real


@pytest.mark.parametrize("case", [c for c in CASES if _truth(c)["violated"]])
def test_corpus_incident_is_fixed_by_the_reference_firmware_unless_the_host_caused_it(
    case: str,
) -> None:
    truth = _truth(case)
    sc = _import(case).scenario
    after = run_scenario(sc, "reference")
    if truth.get("host_side"):
        assert sorted(after.violated()) == sorted(truth["violated"])  # not the terminal's bug
    else:
        assert after.violated() == []
