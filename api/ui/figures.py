"""The job page's fidelity figures as a table: one row per class, one column per figure.

A job's result keeps fidelity as nested JSON (`training.fidelity.fidelity_report`: overall and per class,
keyed by class index); printed as-is it is an unreadable dict, so the page gets rows and columns instead.
Pure: no request, no ledger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# (key in the report, column heading), in the order they are shown; FD and KID only where reported.
COLUMNS = (
    ("accuracy", "Cond. accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("density", "Density"),
    ("coverage", "Coverage"),
    ("frechet_distance", "FD"),
    ("kid", "KID"),
)
MAX_ROWS = 1000  # a model's classes are bounded, but a page need not be


@dataclass
class FidelityTable:
    """What the template draws: headings, then (class label, one cell per heading) rows."""

    extractor: str | None
    k: int | None
    headings: list[str]
    rows: list[tuple[str, list[float | None]]] = field(default_factory=list)
    skipped: str | None = None


def fidelity_source(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A job result's fidelity report: a sampling job's own, or a training job's in its metrics."""
    found = result.get("fidelity")
    if not isinstance(found, Mapping):
        metrics = result.get("metrics")
        found = metrics.get("fidelity") if isinstance(metrics, Mapping) else None
    return found if isinstance(found, Mapping) else None


def fidelity_table(
    report: Mapping[str, Any] | None,
    class_names: Sequence[str] = (),
    accuracy: Mapping[str, Any] | None = None,
) -> FidelityTable | None:
    """The report as a table (an "all classes" row first), or None when there is nothing to show.

    `accuracy` (a training job's conditional accuracy by class index) becomes a column when given.
    """
    if report is None and not accuracy:
        return None
    report = report or {}
    extractor = report.get("extractor") if isinstance(report.get("extractor"), str) else None
    k = report.get("k") if isinstance(report.get("k"), int) else None
    skipped = str(report["skipped"]) if "skipped" in report else None
    overall = _mapping(report.get("overall"))
    per_class = _mapping(report.get("per_class"))
    labels = sorted(set(per_class) | set(accuracy or {}), key=_class_order)[:MAX_ROWS]
    by_label: dict[str, dict[str, Any]] = {}
    for label in labels:
        figures = per_class.get(label)
        row = dict(figures) if isinstance(figures, Mapping) else {}
        if accuracy and label in accuracy:
            row["accuracy"] = accuracy[label]
        by_label[label] = row
    shown = [
        (key, heading)
        for key, heading in COLUMNS
        if key in overall or any(key in row for row in by_label.values())
    ]
    table = FidelityTable(extractor, k, [heading for _, heading in shown], skipped=skipped)
    if overall:
        table.rows.append(("all classes", [_number(overall.get(key)) for key, _ in shown]))
    for label in labels:
        table.rows.append(
            (_class_label(label, class_names), [_number(by_label[label].get(key)) for key, _ in shown])
        )
    if not table.rows and skipped is None:
        return None
    return table


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _class_order(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def _class_label(label: str, class_names: Sequence[str]) -> str:
    if label.isdigit() and int(label) < len(class_names) and class_names[int(label)] != label:
        return f"{label} ({class_names[int(label)]})"
    return label


def _number(value: Any) -> float | None:
    """A finite figure, or None (a blank cell) for a missing, NaN or non-numeric one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
