"""The adapter point for other log formats.

Import reads JSON lines (docs/incident-logs.md). A log in another format goes
through an adapter first: a function that takes the open file (binary, already
checked to be a regular file within the size limit) and yields one JSON line (bytes,
ending with a newline) per input line, numbered as the input is, so every problem
still names the right line of the original file. Register it in ADAPTERS under a
name; `posharness incident import --format NAME` then uses it for both logs.

The example adapter reads a plain CSV export: a header row naming the columns
(`ts`, `event`, `terminal`, and any message or event field of the JSON format),
one event per row. CSV has no types, so the adapter types the fields: the integer
fields become integers (a zero-padded STAN "000381" is STAN 381 here, since CSV
exporters pad), `true`/`false` become booleans, a cell starting with `{` or `[` is
read as JSON (receipts, batch items), and empty cells are left out.
"""

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

# Fields that are integers in the JSON format.
INT_FIELDS = frozenset(
    (
        "amount",
        "stan",
        "journal",
        "orig_stan",
        "batch_no",
        "debit_count",
        "debit_amount",
        "credit_count",
        "credit_amount",
        "version",
        "tip",
    )
)
BOOL_FIELDS = frozenset(("repeat", "copy", "preauth"))

# (binary file) -> JSON lines; the n-th yielded line stands for input line n (a
# header row yields an empty line, which import skips).
Adapter = Callable[[IO[bytes]], Iterator[bytes]]


def _cell(key: str, text: str) -> Any:
    if key in INT_FIELDS and text.strip().lstrip("-").isdigit():
        return int(text)
    if key in BOOL_FIELDS and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def csv_lines(f: IO[bytes]) -> Iterator[bytes]:
    """A CSV export with a header row -> JSON lines (see the module doc)."""
    text = io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="")
    try:
        header: list[str] | None = None
        for row in csv.reader(text):
            if header is None:
                header = [h.strip().lower() for h in row]
                yield b"\n"
                continue
            obj = {k: _cell(k, v) for k, v in zip(header, row, strict=False) if k and v != ""}
            yield json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
    finally:
        text.detach()  # the caller closes the file


def jsonl_lines(f: IO[bytes]) -> Iterator[bytes]:
    """The native format: the lines as they are."""
    yield from f


ADAPTERS: dict[str, Adapter] = {"jsonl": jsonl_lines, "csv": csv_lines}
