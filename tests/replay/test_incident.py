"""Incident logs: rendering, parsing (malformed lines reported, never a crash),
clock-skew estimation, fault inference, and the recorded incidents."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from harness.cli import main
from harness.incidents import import_logs, logs_of_trace, outcome_of, trace_to_logs
from harness.incidents.parse import parse_tz
from harness.runner import run_scenario
from scenarios.loader import load_scenario

from .conftest import RECORDED, record

# Each recorded incident: the flawed firmware and the invariant it breaks.
INCIDENTS = {
    "sdk-in-progress-decline": ("zoo:decline-on-in-progress", "no-charge-on-failure"),
    "lost-response-double-charge": ("zoo:naive-retry", "no-duplicate-charge"),
    "forged-approval-receipt": ("zoo:trusts-unsigned", "no-receipt-without-record"),
    "batch-counts-reversed-sale": ("zoo:batch-counts-reversed", "batch-reconciles"),
}


@pytest.mark.parametrize("name", sorted(INCIDENTS))
def test_recorded_incident_imports_reproduces_and_the_reference_fixes_it(
    name: str, tmp_path: Path
) -> None:
    firmware, invariant = INCIDENTS[name]
    folder = RECORDED / name
    imported = import_logs(folder / "terminal.log", folder / "host.log")
    assert imported.problems == [] and imported.unexplained == []
    assert imported.mismatches == []  # same displays, host decisions and receipts
    sc = imported.scenario
    assert sc.firmware == firmware  # from the terminal log's header
    flawed = run_scenario(sc, trace_path=tmp_path / "flawed.jsonl")
    assert invariant in flawed.violated()
    # The replay's outcome equals the logged one (checked here independently of import).
    logged = outcome_of(*_parse(folder))
    assert outcome_of(*logs_of_trace(tmp_path / "flawed.jsonl")) == logged
    fixed = run_scenario(sc, "reference")
    assert fixed.violated() == [] and fixed.crashes == 0
    # The committed scenario.toml is what import writes, and it passes `run`.
    committed = load_scenario(folder / "scenario.toml")
    assert committed.faults == sc.faults and committed.steps == sc.steps
    assert invariant in committed.expect.violated
    assert run_scenario(committed).passed


def _parse(folder: Path) -> tuple:  # type: ignore[type-arg]
    from harness.incidents import HOST_EVENTS, TERMINAL_EVENTS, parse_log

    problems: list[str] = []
    return (
        parse_log(folder / "terminal.log", TERMINAL_EVENTS, problems),
        parse_log(folder / "host.log", HOST_EVENTS, problems),
    )


@pytest.mark.parametrize("skew_ms", [-90_000, -3, 0, 7, 3_600_000])
def test_clock_skew_is_recovered_exactly(tmp_path: Path, skew_ms: int) -> None:
    trace = record(tmp_path, "scenarios/incidents/dup-response-lost-retry.toml")
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log", skew_ms)
    imported = import_logs(tmp_path / "t.log", tmp_path / "h.log")
    assert (imported.skew_ms, imported.latency_ms) == (skew_ms, 40)
    assert imported.pairs >= 2
    assert [f.describe() for f in imported.scenario.faults] == [
        "drop(nth=1, direction=to_terminal, mti=0210)"
    ]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("fault-delay.toml", "delay"),
        ("fault-duplicate.toml", "duplicate"),
        ("fault-drop.toml", "drop"),
        ("fault-rc_burst.toml", "rc_burst"),
        ("fault-power_cut.toml", "power_cut"),
        ("dup-power-cut-mid-sale.toml", "power_cut"),
        ("fault-printer_jam.toml", "printer_jam"),
        ("fault-misread.toml", "misread"),
        ("fault-host_crash.toml", "host_crash"),
        ("fault-double_tap.toml", "double_tap"),
    ],
)
def test_fault_kinds_are_inferred_and_the_outcome_reproduced(
    tmp_path: Path, scenario: str, expected: str
) -> None:
    original = load_scenario(Path("scenarios/incidents") / scenario)
    trace = record(tmp_path, f"scenarios/incidents/{scenario}")
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log", 1234)
    imported = import_logs(tmp_path / "t.log", tmp_path / "h.log")
    assert imported.mismatches == []
    kinds = [f.KIND for f in imported.scenario.faults]
    assert expected in kinds
    assert [f for f in imported.scenario.faults if expected == f.KIND] == [
        f for f in original.faults if expected == f.KIND
    ]


def test_an_unexplainable_difference_is_listed_not_hidden(tmp_path: Path) -> None:
    # A clock drift makes the terminal time out early: nothing in the logs names it,
    # so the replay of the inferred scenario differs and the import says so.
    trace = record(tmp_path, "scenarios/incidents/fault-clock_skew.toml")
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log", 0)
    imported = import_logs(tmp_path / "t.log", tmp_path / "h.log")
    assert imported.mismatches
    out = tmp_path / "s.toml"
    assert (
        main(
            [
                "incident",
                "import",
                str(tmp_path / "t.log"),
                str(tmp_path / "h.log"),
                "--out",
                str(out),
            ]
        )
        == 1
    )


def test_malformed_log_lines_are_reported_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = RECORDED / "lost-response-double-charge"
    lines = (folder / "terminal.log").read_text().splitlines(keepends=True)
    # Corrupt a display of the batch close (nothing the inference needs), add junk.
    idx = max(i for i, line in enumerate(lines) if "BATCH" in line)
    lines[idx] = lines[idx][:40] + "\n"
    lines.insert(3, "not json at all\n")
    lines.insert(4, '{"ts":"yesterday","terminal":"T0001","event":"boot"}\n')
    lines.insert(5, '{"ts":"2024-03-15T09:00:00.000+00:00","event":"teleport"}\n')
    lines.insert(6, '{"ts":"2024-03-15T09:00:00.000+00:00","event":"send","mti":200,"stan":1}\n')
    lines.append('{"ts":"2024-03-15T09:05:00.000+00:00","event":"display"')  # truncated
    t_log = tmp_path / "terminal.log"
    t_log.write_text("".join(lines))
    out = tmp_path / "scenario.toml"
    code = main(["incident", "import", str(t_log), str(folder / "host.log"), "--out", str(out)])
    printed = capsys.readouterr().out
    for lineno, what in [
        (4, "not a JSON object"),
        (5, "bad timestamp"),
        (6, "unknown event 'teleport'"),
        (7, "send: mti must be a string"),
        (idx + 5, "not a JSON object"),
        (len(lines), "truncated line"),
    ]:
        assert f"{t_log}:{lineno}: {what}" in printed, (lineno, what, printed)
    assert code == 0  # the bad lines carried nothing the outcome depends on
    assert load_scenario(out).faults == load_scenario(folder / "scenario.toml").faults


def test_import_with_another_firmware_reports_that_the_outcome_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = RECORDED / "forged-approval-receipt"
    out = tmp_path / "x.toml"
    code = main(
        [
            "incident",
            "import",
            str(folder / "terminal.log"),
            str(folder / "host.log"),
            "--out",
            str(out),
            "--firmware",
            "reference",
            "--name",
            "x",
        ]
    )
    # The logs came from zoo:trusts-unsigned: the reference firmware refuses the
    # forgery, so its replay cannot show the logged receipt, and import says so (exit 1).
    assert code == 1
    printed = capsys.readouterr().out
    assert "forge(nth=1, delay_ms=5)" in printed and "does NOT reproduce" in printed
    data = tomllib.loads(out.read_text())
    assert data["firmware"] == "reference" and data["name"] == "x"
    assert "violated" not in data["expect"]


def test_import_of_a_missing_log_is_a_usage_error(tmp_path: Path) -> None:
    assert (
        main(
            [
                "incident",
                "import",
                str(tmp_path / "a"),
                str(tmp_path / "b"),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )


def test_a_print_without_any_approval_is_listed_as_a_print_path_fault(tmp_path: Path) -> None:
    trace = record(
        tmp_path, "scenarios/incidents/receipt-no-record-declined.toml", "zoo:receipt-from-request"
    )
    trace_to_logs(trace, tmp_path / "t.log", tmp_path / "h.log", 0)
    imported = import_logs(tmp_path / "t.log", tmp_path / "h.log")
    assert any("print-path fault" in u for u in imported.unexplained)
    assert imported.mismatches == []
    assert "no-receipt-without-record" in imported.violated


# ---------------------------------------------------------------- whole-file refusals

C01 = Path(__file__).parent / "corpus" / "c01-gprs-lost-response-retried-as-new-sale"


def _import_cli(tmp_path: Path, t_log: Path, h_log: Path, *extra: str) -> tuple[int, list[str]]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                "incident",
                "import",
                str(t_log),
                str(h_log),
                "--out",
                str(tmp_path / "o.toml"),
                *extra,
            ]
        )
    return code, [line for line in err.getvalue().splitlines() if line]


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return p


def _host_lines() -> list[str]:
    return (C01 / "host.log").read_text(encoding="utf-8").splitlines()


def _terminal_lines() -> list[str]:
    return (C01 / "terminal.log").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty host log", "empty log"),
        ("garbage host log", "lines unusable"),
        ("epoch timestamps", "Unix epoch number"),
        ("zero-padded STAN strings", "digit string '000381'"),
        ("swapped arguments", "arguments swapped"),
        ("mismatched logs", "do not belong together"),
        ("times without an offset", "no UTC offset"),
        ("not a regular file", "not a regular file"),
    ],
)
def test_a_whole_file_problem_exits_2_with_one_line(
    tmp_path: Path, case: str, expected: str
) -> None:
    t_log, h_log = C01 / "terminal.log", C01 / "host.log"
    if case == "empty host log":
        h_log = _write(tmp_path, "h.log", [])
    elif case == "garbage host log":
        h_log = _write(tmp_path, "h.log", ["<html>502 Bad Gateway</html>"] * 30)
    elif case == "epoch timestamps":
        lines = [re.sub(r'"ts":"[^"]*"', '"ts":1731057241.118', x) for x in _host_lines()]
        h_log = _write(tmp_path, "h.log", lines)
    elif case == "zero-padded STAN strings":
        lines = [
            re.sub(r'"stan":(\d+)', lambda m: f'"stan":"{int(m[1]):06d}"', x)
            for x in _terminal_lines()
        ]
        t_log = _write(tmp_path, "t.log", lines)
    elif case == "swapped arguments":
        t_log, h_log = h_log, t_log
    elif case == "mismatched logs":
        h_log = (
            Path(__file__).parent / "corpus" / "c04-float-amount-charged-one-cent-less" / "host.log"
        )
        lines = [x.replace("TKY00318", "LDN-POS-0042") for x in h_log.read_text().splitlines()]
        h_log = _write(tmp_path, "h.log", lines)
    elif case == "times without an offset":
        lines = [x.replace("+01:00", "") for x in _terminal_lines()]
        t_log = _write(tmp_path, "t.log", lines)
    elif case == "not a regular file":
        h_log = tmp_path
    code, err = _import_cli(tmp_path, t_log, h_log)
    assert code == 2
    assert len(err) == 1 and expected in err[0], err


def _corpus_lines(case: str, log: str) -> list[str]:
    path = next((Path(__file__).parent / "corpus").glob(case + "-*")) / log
    return path.read_text(encoding="utf-8").splitlines()


def test_two_terminals_interleaved_import_as_one_scenario_each(tmp_path: Path) -> None:
    # Two shops' incidents in one terminal log and one host log (a second header
    # in the host log is skipped): each terminal becomes its own scenario, and
    # neither sees the other's lines.
    t_log = _write(
        tmp_path,
        "t.log",
        _corpus_lines("c05", "terminal.log") + _corpus_lines("c04", "terminal.log"),
    )
    h_log = _write(
        tmp_path, "h.log", _corpus_lines("c05", "host.log") + _corpus_lines("c04", "host.log")[1:]
    )
    code, err = _import_cli(tmp_path, t_log, h_log)
    assert err == [] and code == 0
    # Each equals the import of that terminal's logs alone (but for its name).
    for case, tid in (("c05", "PAR-CAISSE-03"), ("c04", "TKY00318")):
        split = load_scenario(tmp_path / f"o-{tid}.toml")
        d = next((Path(__file__).parent / "corpus").glob(case + "-*"))
        alone = import_logs(d / "terminal.log", d / "host.log", verify=False).scenario
        assert split.steps == alone.steps and split.faults == alone.faults
        assert (split.firmware, split.terminal, split.cards) == (
            alone.firmware,
            alone.terminal,
            alone.cards,
        )
    code, err = _import_cli(tmp_path, t_log, h_log, "--terminal", "TKY00318")
    assert code == 0 and (tmp_path / "o.toml").exists()


def test_times_without_an_offset_import_with_tz(tmp_path: Path) -> None:
    lines = [x.replace("+01:00", "") for x in _terminal_lines()]
    t_log = _write(tmp_path, "t.log", lines)
    plain = import_logs(C01 / "terminal.log", C01 / "host.log", firmware="zoo:naive-retry")
    zoned = import_logs(
        t_log, C01 / "host.log", firmware="zoo:naive-retry", tz=parse_tz("Europe/London")
    )
    # The log said +01:00; read as London time (+00:00 in November) every
    # terminal time moves one hour later, so the host clock looks 1 h behind.
    assert zoned.skew_ms == plain.skew_ms - 3_600_000
    assert zoned.mismatches == []


def test_a_vendor_firmware_name_imports_with_reference_and_says_so() -> None:
    imported = import_logs(C01 / "terminal.log", C01 / "host.log")
    assert imported.scenario.firmware == "reference"
    assert any("'Tetra-Desk5000 12.4.1'" in n and "reference" in n for n in imported.notes)


def test_uppercase_vocabulary_is_read_like_lowercase(tmp_path: Path) -> None:
    lines = [
        x.replace('"approved"', '"APPROVED"')
        .replace('"ok"', '"OK"')
        .replace('"confirm"', '"Confirm"')
        for x in _terminal_lines()
    ]
    t_log = _write(tmp_path, "t.log", lines)
    imported = import_logs(t_log, C01 / "host.log", firmware="zoo:naive-retry")
    assert imported.mismatches == [] and imported.problems == []
    assert "no-duplicate-charge" in imported.logged_violations


def test_a_log_larger_than_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.incidents import parse

    monkeypatch.setattr(parse, "LOG_BYTES_MAX", 1000)
    code, err = _import_cli(tmp_path, C01 / "terminal.log", C01 / "host.log")
    assert code == 2 and "more than the 1000 allowed" in err[0]


def test_a_plain_csv_export_imports_through_the_csv_adapter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(__file__).parent / "corpus" / "csv-export-float-amount"
    out = tmp_path / "csv.toml"
    argv = ["incident", "import", str(folder / "terminal.csv"), str(folder / "host.csv")]
    code = main([*argv, "--format", "csv", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "amount-integrity: purchase 1: keyed 435, charged 434" in printed
    steps = load_scenario(out).steps
    assert [(s.action, s.amount) for s in steps] == [("purchase", 435)]
    # Read as JSON lines, the same file is refused as a whole (one line, exit 2).
    assert main([*argv, "--out", str(out)]) == 2
