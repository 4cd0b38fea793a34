"""Small number helpers shared by the CV summary and the report, so both read run files the same way, and the one
Markdown table writer of the report and eval."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON's and YAML's true/false are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A real int or float that is finite; bool is not a number here (JSON's true/false are not figures)."""
    return is_real(value) and math.isfinite(value)


def mean_and_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) over folds of the values that are present (None skipped);
    (None, None) with no value, std None with one value (a single fold has no spread)."""
    numbers = [value for value in values if value is not None]
    if not numbers:
        return None, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def percent(share: Any, std: float | None = None, unit: str = "") -> str:
    """A share as percent with two decimals ('91.23'), ± the std in points when given ('91.23 ± 0.22'), then the
    unit ('%' for the console); '–' for a missing or non-finite value. The one formatting of accuracies."""
    if not is_finite_number(share):
        return "–"
    return f"{100 * share:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + unit


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; a cell's '|' is escaped and its line breaks become spaces."""
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
