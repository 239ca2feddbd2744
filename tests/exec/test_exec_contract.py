"""The exec: adapter against a firmware behind the pipe (tests/exec/pipe_reference.py):
the reference firmware over the pipe behaves byte for byte as in process, and every
way of breaking the protocol is one clear error naming the event and the field."""

from __future__ import annotations

import io
import shlex
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import UsageError, run_scenario
from scenarios.loader import load_scenario

HERE = Path(__file__).parent
PIPE = f"exec:{shlex.quote(sys.executable)} {HERE / 'pipe_reference.py'}"
SUITE = sorted(Path("scenarios/incidents").glob("*.toml"))


def _body(trace: Path) -> list[str]:
    """A trace without its header line (which names the firmware)."""
    return trace.read_text(encoding="utf-8").splitlines()[1:]


def test_the_reference_over_the_pipe_writes_the_same_traces_as_in_process(
    tmp_path: Path,
) -> None:
    for path in SUITE:
        sc = load_scenario(path)
        a, b = tmp_path / "in.jsonl", tmp_path / "pipe.jsonl"
        run_scenario(sc, "reference", trace_path=a)
        result = run_scenario(sc, PIPE, trace_path=b)
        assert _body(a) == _body(b), path.name
        assert result.passed, path.name


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("bad-json", "event 3 (ConfirmPressed): not a JSON line"),
        ("unknown-effect", "event 3 (ConfirmPressed): effects[0].type: 'Beep' is not an effect"),
        ("missing-field", "event 3 (ConfirmPressed): effects[0].delay_ms: missing"),
        ("wrong-n", "event 3 (ConfirmPressed): n: 4, expected 3"),
        ("huge", "event 3 (ConfirmPressed): an answer line over 1048576 bytes"),
        ("old-protocol", "hello: protocol: 0, the harness speaks 1"),
    ],
)
def test_a_protocol_violation_is_one_error_naming_the_event_and_field(
    flaw: str, expected: str
) -> None:
    sc = load_scenario("scenarios/incidents/fault-drop.toml")
    with pytest.raises(UsageError) as err:
        run_scenario(sc, f"{PIPE} {flaw}")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_firmware_that_never_answers_is_unresponsive_not_a_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shell firmware answers hello at once and then never again.
    hello = '{"type":"hello","protocol":1,"name":"mute","version":"0"}'
    script = f"read h; echo '{hello}'; while read e; do :; done"
    monkeypatch.setenv("POSHARNESS_EXEC_TIMEOUT_S", "3")
    sc = load_scenario("scenarios/incidents/fault-drop.toml")
    with pytest.raises(UsageError) as err:
        run_scenario(sc, f"exec:sh -c {shlex.quote(script)}")
    assert "event 1 (Boot): unresponsive, no answer within 3 s" in str(err.value)


def test_a_firmware_process_that_dies_is_a_crash_with_its_stderr(tmp_path: Path) -> None:
    sc = load_scenario("scenarios/incidents/fault-drop.toml")
    result = run_scenario(sc, f"{PIPE} crash", trace_path=tmp_path / "t.jsonl")
    assert result.crashes >= 1 and not result.passed
    crash = next(p for p in result.problems if p.startswith("firmware crashed"))
    assert "exit 3" in crash and "assertion failed in sale.c:42" in crash


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_an_exec_command_that_is_not_a_program_is_exit_2_with_one_line() -> None:
    code, _, err = _cli("run", "scenarios/incidents/fault-drop.toml", "--firmware", "exec:")
    assert code == 2 and err.count("\n") == 1 and "no command after exec:" in err
    code, _, err = _cli(
        "run", "scenarios/incidents/fault-drop.toml", "--firmware", "exec:./no/such/firmware"
    )
    assert code == 2 and "is not an executable program" in err


def test_a_scenario_file_cannot_name_an_exec_firmware(tmp_path: Path) -> None:
    text = Path("scenarios/incidents/fault-drop.toml").read_text(encoding="utf-8")
    src = tmp_path / "sc.toml"
    src.write_text(f'firmware = "exec:rm -rf /"\n{text}', encoding="utf-8")
    code, _, err = _cli("run", str(src))
    assert code == 2 and "names code outside posharness" in err


def test_replay_of_an_exec_trace_is_byte_identical(tmp_path: Path) -> None:
    code, _, _ = _cli(
        "run",
        "scenarios/incidents/dup-power-cut-mid-sale.toml",
        "--firmware",
        PIPE,
        "--trace-dir",
        str(tmp_path),
    )
    assert code == 0
    (trace,) = tmp_path.glob("*.jsonl")
    code, out, err = _cli("replay", str(trace), "--allow-external-firmware")
    assert code == 0, out + err
    assert out.startswith("reproduced byte for byte")


def test_check_determinism_names_where_a_firmware_reading_the_clock_parts(
    tmp_path: Path,
) -> None:
    code, out, _ = _cli(
        "run",
        "scenarios/incidents/fault-drop.toml",
        "--firmware",
        f"{PIPE} clock",
        "--check-determinism",
    )
    assert code == 1
    assert "not deterministic: the two runs part at trace line" in out
    code, out, _ = _cli(
        "run", "scenarios/incidents/fault-drop.toml", "--firmware", PIPE, "--check-determinism"
    )
    assert code == 0, out
