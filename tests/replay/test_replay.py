"""Replay: byte-identical reproduction, divergence reports, before/after, bad traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.replay import before_after, compare_traces, replay
from harness.trace import TraceReadError


def test_replay_reproduces_a_trace_byte_for_byte(naive_retry_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    result = replay(naive_retry_trace, out)
    assert result.identical
    assert out.read_bytes() == naive_retry_trace.read_bytes()
    assert result.header.firmware == "zoo:naive-retry"


def test_a_changed_record_is_reported_with_its_seq_and_field(
    naive_retry_trace: Path, tmp_path: Path
) -> None:
    lines = naive_retry_trace.read_text().splitlines(keepends=True)
    seq = next(i for i, line in enumerate(lines, 1) if '"kind":"host"' in line)
    rec = json.loads(lines[seq - 1])
    rec["rc"] = "05"
    lines[seq - 1] = json.dumps(rec, separators=(",", ":")) + "\n"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(lines))
    result = replay(tampered)
    assert result.divergence is not None
    assert result.divergence.seq == seq
    assert result.divergence.what == "host.rc"
    assert (result.divergence.expected, result.divergence.got) == ('"05"', '"00"')


def test_a_missing_tail_is_a_length_divergence(naive_retry_trace: Path, tmp_path: Path) -> None:
    lines = naive_retry_trace.read_text().splitlines(keepends=True)
    short = tmp_path / "short.jsonl"
    short.write_text("".join(lines[:-3]))
    d = compare_traces(short, naive_retry_trace)
    assert d is not None and d.what == "length" and d.seq == len(lines) - 2


def test_replay_cli_exit_codes(
    naive_retry_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(naive_retry_trace)]) == 0
    assert "reproduced byte for byte" in capsys.readouterr().out
    text = naive_retry_trace.read_text().replace('"amount":1250', '"amount":1251', 1)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(text)
    assert main(["replay", str(changed)]) == 1
    assert "DIVERGED" in capsys.readouterr().out


def test_before_after_shows_the_fix(naive_retry_trace: Path) -> None:
    ba = before_after(naive_retry_trace, "reference")
    rows = {name: (before, after) for name, _, before, after in ba.rows()}
    assert rows["no-duplicate-charge"] == ("VIOLATED (1)", "holds")
    assert ba.fixed
    assert not before_after(naive_retry_trace, "zoo:naive-retry").fixed


def test_before_after_cli_prints_a_table_and_exits_by_the_after_run(
    naive_retry_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(naive_retry_trace), "--firmware", "reference"]) == 0
    out = capsys.readouterr().out
    assert "before (zoo:naive-retry)" in out and "after (reference)" in out and "FIXED" in out
    assert main(["replay", str(naive_retry_trace), "--firmware", "zoo:naive-retry"]) == 1
    assert "STILL FAILING" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated line"),
        (lambda b: b.replace(b'"kind":"display"', b'"kind":"display', 1), "not a JSON object"),
        (lambda b: b.replace(b'"v":1', b'"v":99', 1), "unknown trace version 99"),
        (lambda b: b.replace(b'"seed":1,', b'"seed":"x",', 1), "no integer seed"),
    ],
    ids=["truncated", "corrupted", "unknown-version", "bad-header"],
)
def test_bad_traces_are_one_line_naming_file_and_line(
    naive_retry_trace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: object,
    message: str,
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(mutate(naive_retry_trace.read_bytes()))  # type: ignore[operator]
    with pytest.raises(TraceReadError, match=message):
        replay(bad)
    for argv in (["replay", str(bad)], ["show", str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) + ":" in err[0] and message in err[0]


def test_missing_trace_and_bad_firmware_are_usage_errors(
    naive_retry_trace: Path, tmp_path: Path
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["replay", str(naive_retry_trace), "--firmware", "zoo:nope"]) == 2
