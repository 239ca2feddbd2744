"""examples/firmware-js: the reference firmware ported to JavaScript, run through
the exec: pipe. Its traces equal the in-process reference's byte for byte; its
planted flaw (FLAW=naive-retry) is caught by the suite and found by the fuzzer."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import run_scenario
from scenarios.loader import load_scenario

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node (Node.js) is not installed: scripts/setup-examples installs it"
)
FIRMWARE = "examples/firmware-js/firmware.js"
JS = f"exec:node {FIRMWARE}"
FLAWED = f"exec:env FLAW=naive-retry node {FIRMWARE}"
SUITE = sorted(Path("scenarios/incidents").glob("*.toml"))


def _body(trace: Path) -> list[str]:
    return trace.read_text(encoding="utf-8").splitlines()[1:]  # the header names the firmware


def test_every_built_in_scenario_gives_the_reference_firmwares_trace(tmp_path: Path) -> None:
    for path in SUITE:
        sc = load_scenario(path)
        a, b = tmp_path / "ref.jsonl", tmp_path / "js.jsonl"
        run_scenario(sc, "reference", trace_path=a)
        result = run_scenario(sc, JS, trace_path=b)
        assert _body(a) == _body(b), path.name
        assert result.passed, path.name


def test_the_planted_flaw_is_caught_by_the_invariant_that_names_it() -> None:
    sc = load_scenario("scenarios/incidents/dup-response-lost-retry.toml")
    result = run_scenario(sc, FLAWED)
    assert "no-duplicate-charge" in result.violated()
    assert run_scenario(sc, JS).passed


def test_fuzz_finds_the_planted_flaw_and_writes_a_scenario_that_reproduces_it(
    tmp_path: Path,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["fuzz", "--firmware", FLAWED, "--examples", "30", "--out", str(tmp_path)])
    assert code == 1, out.getvalue() + err.getvalue()
    (written,) = tmp_path.glob("*.toml")
    result = run_scenario(load_scenario(written), FLAWED)
    assert "no-duplicate-charge" in result.violated()
    assert run_scenario(load_scenario(written), JS).passed
