"""Helpers shared by the strategy tests: a fixed sample of a strategy's examples."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def drawn(strategy: st.SearchStrategy[Any], examples: int = 200) -> list[Any]:
    """`examples` examples of `strategy`, the same ones on every run."""
    seen: list[Any] = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(x: Any) -> None:
        seen.append(x)

    collect()
    return seen
