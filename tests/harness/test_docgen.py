"""docs/scenario-format.md and `list --json` are generated from the code and stay true."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness import docgen
from harness.cli import main
from scenarios.loader import load_scenario


def test_the_scenario_format_page_matches_the_code() -> None:
    """Fails when a key, default or meaning changed without `python -m harness.docgen`."""
    assert docgen.DOC_PATH.read_text(encoding="utf-8") == docgen.render_markdown(), (
        "docs/scenario-format.md is out of date: run python -m harness.docgen"
    )


def test_every_key_has_a_meaning() -> None:
    assert docgen.undocumented() == []


def test_check_mode_says_when_the_page_drifted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "scenario-format.md"
    stale.write_text("# old\n", encoding="utf-8")
    monkeypatch.setattr(docgen, "DOC_PATH", stale)
    assert docgen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def test_every_documented_table_key_is_accepted_by_the_loader(tmp_path: Path) -> None:
    """A file that sets every documented key to its documented default loads, and the
    loaded values equal the defaults: the page describes keys the loader really reads."""
    ref = docgen.reference()
    lines = ['name = "every-key"']
    for row in ref["top_level"]:
        if row["key"] != "name" and row["default"] is not None:
            lines.append(f"{row['key']} = {_toml(row['default'])}")
    for title, rows in ref["tables"].items():
        if title.startswith("[["):
            continue
        lines.append(title)
        lines += [
            f"{r['key']} = {_toml(r['default'])}"
            for r in rows
            if r["default"] is not None and not (title == "[expect]" and r["key"] == "invariants")
        ]
        if title == "[expect]":
            lines.append('invariants = "all"')
    path = tmp_path / "every-key.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tomllib.loads(path.read_text())  # the test's own file is valid TOML
    sc = load_scenario(path)
    for title, obj in (
        ("[terminal]", sc.terminal),
        ("[host]", sc.host),
        ("[network]", sc.network),
        ("[people]", sc.people),
    ):
        for r in ref["tables"][title]:
            assert getattr(obj, r["key"]) == r["default"], (title, r["key"])


def test_list_json_carries_the_format_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {f["kind"]: f for f in data["format"]["faults"]}
    assert "drop" in kinds
    keys = {p["key"] for p in kinds["delay"]["params"]}
    assert {"delay_ms", "nth", "optional", "direction", "mti"} <= keys
    people = {r["key"]: r for r in data["format"]["tables"]["[people]"]}
    assert people["reprints_max"]["default"] == 3
    assert people["print_ms"]["unit"] == "virtual milliseconds"
