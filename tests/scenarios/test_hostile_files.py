"""Hostile files: each is refused with one line naming the file (exit 2), without
reading more than the limit, hanging, or a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cli import main
from scenarios.files import FileRefused, read_bounded
from scenarios.loader import FILE_BYTES_MAX

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], words: str) -> str:
    code = main(argv)
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert code == 2, text
    assert words in text, text
    assert "Traceback" not in text
    # One line on stderr names the file and the problem (`run` also lists the file
    # as an ERROR row in its table on stdout).
    error_lines = [ln for ln in out.err.splitlines() if words in ln]
    assert len(error_lines) == 1, out.err
    return text


def test_a_fifo_is_refused_without_hanging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    _one_line_exit_2(["run", str(fifo)], capsys, "FIFO")


def test_a_device_is_refused_without_reading_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`/dev/zero` used to be read until 2.6 GB had gone into memory."""
    _one_line_exit_2(["run", "/dev/zero"], capsys, "is a device")


def test_a_directory_as_a_trace_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_line_exit_2(["replay", str(tmp_path)], capsys, str(tmp_path))


def test_a_huge_file_is_refused_after_reading_only_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB that take no disk
    with pytest.raises(FileRefused, match="larger than"):
        read_bounded(big, FILE_BYTES_MAX)


def test_deeply_nested_toml_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    _one_line_exit_2(["run", str(path)], capsys, str(path))


def _scenario_with(tmp_path: Path, extra: str, amount: int = 1250) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "bounds"\n'
        f"{extra}\n"
        '[[cards]]\npan = "4000000000000002"\nbalance = 10000\n'
        f'[[steps]]\nat_ms = 0\npurchase = {{ card = "4000000000000002", amount = {amount} }}\n'
    )
    return path


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[terminal]\nresponse_timeout_ms = 0\nmax_sends = 1000000000", "response_timeout_ms"),
        ("[terminal]\nmax_sends = 1000000000", "max_sends"),
        ("[people]\nretry_on_failed = 1000000", "retry_on_failed"),
        ("[network]\nlatency_ms = 9000000000000", "latency_ms"),
    ],
)
def test_absurd_numbers_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, words: str
) -> None:
    """A 20-line file once ran 132 s and took 1 GB (timeout 0, a billion sends)."""
    _one_line_exit_2(["run", str(_scenario_with(tmp_path, extra))], capsys, words)


def test_a_balance_beyond_int64_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario_with(tmp_path, "")
    path.write_text(path.read_text().replace("balance = 10000", "balance = 9223372036854775808"))
    _one_line_exit_2(["run", str(path)], capsys, "balance")


def test_an_amount_beyond_the_money_bound_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario_with(tmp_path, "", amount=2**63 - 1)
    _one_line_exit_2(["run", str(path)], capsys, "purchase.amount")


def _trace(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    assert main(["run", str(INCIDENTS / "fault-drop.toml"), "--trace-dir", str(tmp_path)]) == 0
    trace = next(tmp_path.glob("*.jsonl"))
    return trace, [json.loads(ln) for ln in trace.read_text().splitlines()]


def test_a_trace_with_a_non_integer_seq_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, records = _trace(tmp_path)
    records[3]["seq"] = "four"
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    _one_line_exit_2(["replay", str(trace)], capsys, ":4: seq must be a non-negative integer")


def test_a_deeply_nested_trace_line_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, records = _trace(tmp_path)
    lines = [json.dumps(r) for r in records]
    lines[2] = '{"seq": 2, "t_ms": 0, "kind": "x", "a": ' + "[" * 50_000 + "]" * 50_000 + "}"
    trace.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    _one_line_exit_2(["replay", str(trace)], capsys, str(trace))
