"""Write a scenario as a TOML file that `load_scenario` reads back to an equal Scenario.

`tomllib` reads TOML but does not write it; the scenario's shape is small and fixed
(scalars, flat tables, inline tables, arrays of tables), so a writer for exactly
that shape is a page of code and no new dependency.
"""

from __future__ import annotations

import json
from typing import Any

from .model import Scenario, scenario_to_dict


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_scalar(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Render scenario-shaped data: top-level scalars, then tables, then arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        elif isinstance(value, list) and not value:
            continue  # an empty array of tables is the same as none
        else:
            lines.append(f"{key} = {_scalar(value)}")
    for key, table in tables:
        if key == "expect":
            continue  # written last, where readers look for it
        lines += ["", f"[{key}]"] + [f"{k} = {_scalar(v)}" for k, v in table.items()]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{key}]]"] + [f"{k} = {_scalar(v)}" for k, v in item.items()]
    if "expect" in data:
        lines += ["", "[expect]"] + [f"{k} = {_scalar(v)}" for k, v in data["expect"].items()]
    return "\n".join(lines) + "\n"


def scenario_to_toml(scenario: Scenario) -> str:
    return to_toml(scenario_to_dict(scenario))
