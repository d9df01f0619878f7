"""The job page's loss chart: inline SVG drawn on the server from the job's epoch events.

Drawn here rather than by a chart library in the browser so the page needs no front-end build or vendored
script, reads without JavaScript, and updates by replacing one fragment while the job runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44  # margins: room for the y labels, legend, x labels
SERIES = (("train_loss", "train", "#1f77b4"), ("heldout_neg_elbo", "held-out", "#d62728"))


@dataclass(frozen=True)
class EpochPoint:
    epoch: int
    train_loss: float
    heldout_neg_elbo: float | None  # None: an epoch that `eval_every` did not evaluate


def epoch_points(events: Sequence[Any]) -> list[EpochPoint]:
    """One point per epoch from `epoch` events (the last one of an epoch wins after a resume)."""
    by_epoch: dict[int, EpochPoint] = {}
    for event in events:
        data = event.data or {}
        if event.kind != "epoch" or not isinstance(data.get("epoch"), int):
            continue
        try:
            heldout = data["heldout_neg_elbo"]
            point = EpochPoint(
                data["epoch"], float(data["train_loss"]), None if heldout is None else float(heldout)
            )
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(point.train_loss) and (
            point.heldout_neg_elbo is None or math.isfinite(point.heldout_neg_elbo)
        ):
            by_epoch[point.epoch] = point
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round-numbered ticks covering [low, high]."""
    span = high - low or abs(high) or 1.0
    raw = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while len(ticks) < 12:
        ticks.append(round(value, 10))
        if value >= high:  # the last tick is at or above the highest value
            break
        value += step
    return ticks


def loss_chart_svg(points: Sequence[EpochPoint]) -> str:
    """An SVG line chart of train loss and held-out -ELBO per epoch, with titled axes and a legend."""
    if not points:
        return ""
    values = [v for p in points for field, _, _ in SERIES if (v := getattr(p, field)) is not None]
    ticks = _ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
    last_epoch = max(points[-1].epoch, 2)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(epoch: float) -> float:
        return LEFT + plot_w * (epoch - 1) / (last_epoch - 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="loss per epoch">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>',
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:g}</text>'
        )
    step = max(1, math.ceil(last_epoch / 10))
    for epoch in range(1, last_epoch + 1, step):
        parts.append(
            f'<text x="{x(epoch):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
            f'font-size="11">{epoch}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle" font-size="12">epoch</text>'
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">nats per image</text>'
    )
    for index, (field, label, colour) in enumerate(SERIES):
        series = [p for p in points if getattr(p, field) is not None]  # held-out: the epochs evaluated
        path = " ".join(f"{x(p.epoch):.1f},{y(getattr(p, field)):.1f}" for p in series)
        parts.append(
            f'<polyline class="series-{escape(label)}" fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{path}"/>'
        )
        for p in series:
            parts.append(
                f'<circle cx="{x(p.epoch):.1f}" cy="{y(getattr(p, field)):.1f}" r="2.5" '
                f'fill="{colour}"><title>{label} epoch {p.epoch}: {getattr(p, field):.2f}</title></circle>'
            )
        lx = LEFT + 10 + index * 110
        parts.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{TOP - 12}" y2="{TOP - 12}" stroke="{colour}" '
            'stroke-width="3"/>'
            f'<text x="{lx + 24}" y="{TOP - 8}" font-size="12">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
