"""The example firmwares in C and JavaScript, through the exec: pipe: faithful ports
of the reference (byte-identical traces on every built-in scenario and on generated
ones), their planted flaw caught by the invariant that names it and found by fuzz."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from harness.cli import main
from harness.runner import needed_features, run_scenario
from harness.strategies import scenarios
from scenarios.loader import load_scenario
from scenarios.model import Scenario

from .examples import SKIP_C, SKIP_JS, c_firmware, js_firmware, same_as_reference

# The C and JavaScript examples are card-only ports of the reference that take no
# partial approvals (they declare no feature): they are compared on the scenarios
# that need none.
SUITE = sorted(
    p for p in Path("scenarios/incidents").glob("*.toml") if not needed_features(load_scenario(p))
)
EXAMPLES: list[tuple[str, Callable[..., str | None], str]] = [
    ("c", c_firmware, SKIP_C),
    ("js", js_firmware, SKIP_JS),
]


def _spec(lang: str, flaw: str = "") -> str:
    for name, make, why in EXAMPLES:
        if name == lang:
            spec = make(flaw)
            if spec is None:
                pytest.skip(why)
            return spec
    raise AssertionError(lang)


@pytest.mark.parametrize("lang", ["c", "js"])
def test_every_built_in_scenario_gives_the_reference_firmwares_trace(
    lang: str, tmp_path: Path
) -> None:
    spec = _spec(lang)
    for path in SUITE:
        assert same_as_reference(load_scenario(path), spec, tmp_path), path.name


@pytest.mark.parametrize("lang", ["c", "js"])
def test_generated_scenarios_give_the_reference_firmwares_trace(
    lang: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec = _spec(lang)

    @settings(
        max_examples=100 if lang == "c" else 10,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios())
    def same(sc: Scenario) -> None:
        same_as_reference(sc, spec, tmp_path_factory.mktemp("gen"))

    same()


@pytest.mark.parametrize("lang", ["c", "js"])
def test_the_planted_flaw_is_caught_by_the_invariant_that_names_it(lang: str) -> None:
    sc = load_scenario("scenarios/incidents/dup-response-lost-retry.toml")
    assert "no-duplicate-charge" in run_scenario(sc, _spec(lang, "naive-retry")).violated()
    assert run_scenario(sc, _spec(lang)).passed


@pytest.mark.parametrize("lang", ["c", "js"])
def test_fuzz_finds_the_planted_flaw_and_writes_a_scenario_that_reproduces_it(
    lang: str, tmp_path: Path
) -> None:
    flawed = _spec(lang, "naive-retry")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["fuzz", "--firmware", flawed, "--examples", "30", "--out", str(tmp_path)])
    assert code == 1, out.getvalue() + err.getvalue()
    (written,) = tmp_path.glob("*.toml")
    assert "no-duplicate-charge" in run_scenario(load_scenario(written), flawed).violated()
    assert run_scenario(load_scenario(written), _spec(lang)).passed


def test_a_correct_build_survives_a_fuzz_budget(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["fuzz", "--firmware", _spec("c"), "--examples", "60", "--out", str(tmp_path)])
    assert code == 0, out.getvalue() + err.getvalue()


def test_the_c_example_runs_a_fleet_over_mqtt(capsys: pytest.CaptureFixture[str]) -> None:
    """The same exec: firmware over the real transport: four terminals, one process
    each, every purchase approved and every invariant judged from the host's books."""
    import json

    from harness.mqtt.broker import SETUP_HINT, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip(SETUP_HINT)
    spec = _spec("c")
    args = ["fleet", "--terminals", "4", "--rate", "20", "--duration", "1", "--json"]
    code = main([*args, "--firmware", spec])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report
    assert report["invariants_ok"] is True
    assert report["offered"] == report["completed"] == 20
    assert report["outcomes"] == {"approved": 20}


@pytest.mark.parametrize("lang", ["c", "js"])
def test_incident_import_replays_the_logs_with_an_exec_firmware(lang: str, tmp_path: Path) -> None:
    """The vendor firmware named on the command line runs the import's replay (the log
    header's own firmware name would be refused as a file's choice of code)."""
    case = Path("tests/replay/corpus/c05-printer-jam-paid-no-receipt")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                "incident",
                "import",
                str(case / "terminal.log"),
                str(case / "host.log"),
                "--out",
                str(tmp_path / "c05.toml"),
                "--firmware",
                _spec(lang),
            ]
        )
    # The reference design (ported) does not lose the receipt: the replay differs.
    assert code == 1, err.getvalue()
    assert "does NOT reproduce" in out.getvalue()
    assert load_scenario(tmp_path / "c05.toml").firmware == _spec(lang)
