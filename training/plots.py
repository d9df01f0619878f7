"""A loss-curve PNG drawn with numpy alone: no plotting or image library in `training/`.

The picture is deliberately plain: white background, black axes with tick marks, the first/last epoch under
the x axis and the lowest/highest value beside the y axis (a built-in 3x5 pixel font drawn at 2x), the
training loss in blue and the held-out -ELBO in orange, with a two-line colour key (no text) in the
top-right corner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from training.sample import encode_png

WIDTH, HEIGHT = 480, 240
TRAIN_COLOUR = (31, 119, 180)  # blue
HELDOUT_COLOUR = (255, 127, 14)  # orange
AXIS_COLOUR = (0, 0, 0)
BACKGROUND = (255, 255, 255)
# Plot area inside the image: room on the left and below for the axis labels.
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 12, 26
GLYPH_SCALE = 2  # each font pixel is 2x2 image pixels

# 3x5 glyphs for the axis labels, one string of 15 bits (row by row) per character.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "e": "000111111100111",
    "+": "000010111010000",
}


def loss_curve_png(history: Sequence[Any]) -> bytes:
    """Return a 480x240 RGB PNG of the training loss and the held-out -ELBO per epoch.

    Args:
        history: `EpochMetrics` or dicts with "epoch", "train_loss" and "heldout_neg_elbo" (as in a
            TrainResult's history or a TrainState's). Non-finite values are left out; an empty history
            gives empty axes.

    Returns:
        PNG bytes.
    """
    rows = [_as_dict(m) for m in history]
    epochs = [int(r["epoch"]) for r in rows]
    series = [
        ([float(r["train_loss"]) for r in rows], TRAIN_COLOUR),
        ([float(r["heldout_neg_elbo"]) for r in rows], HELDOUT_COLOUR),
    ]
    values = [v for ys, _ in series for v in ys if math.isfinite(v)]
    canvas = np.full((HEIGHT, WIDTH, 3), BACKGROUND, dtype=np.uint8)
    x_range = (min(epochs), max(epochs)) if epochs else (0, 1)
    y_range = (min(values), max(values)) if values else (0.0, 1.0)
    _draw_axes(canvas, x_range, y_range)
    for ys, colour in series:
        points = [
            (_x_pixel(e, x_range), _y_pixel(v, y_range))
            for e, v in zip(epochs, ys, strict=True)
            if math.isfinite(v)
        ]
        for a, b in zip(points, points[1:], strict=False):
            _line(canvas, a, b, colour)
        for p in points:
            _dot(canvas, p, colour)
    for row, colour in enumerate((TRAIN_COLOUR, HELDOUT_COLOUR)):  # colour key
        y = TOP + 6 + 6 * row
        _line(canvas, (WIDTH - RIGHT - 30, y), (WIDTH - RIGHT - 8, y), colour)
    return encode_png(canvas)


def _as_dict(metrics: Any) -> dict[str, Any]:
    return asdict(metrics) if is_dataclass(metrics) and not isinstance(metrics, type) else dict(metrics)


def _x_pixel(epoch: float, x_range: tuple[float, float]) -> int:
    lo, hi = x_range
    t = 0.5 if hi == lo else (epoch - lo) / (hi - lo)  # a single epoch sits in the middle
    return round(LEFT + 4 + t * (WIDTH - LEFT - RIGHT - 8))


def _y_pixel(value: float, y_range: tuple[float, float]) -> int:
    lo, hi = y_range
    t = 0.5 if hi == lo else (value - lo) / (hi - lo)
    return round(HEIGHT - BOTTOM - 4 - t * (HEIGHT - TOP - BOTTOM - 8))


def _draw_axes(canvas: np.ndarray, x_range: tuple[int, int], y_range: tuple[float, float]) -> None:
    canvas[TOP : HEIGHT - BOTTOM + 1, LEFT] = AXIS_COLOUR  # y axis
    canvas[HEIGHT - BOTTOM, LEFT : WIDTH - RIGHT] = AXIS_COLOUR  # x axis
    for epoch in sorted(set(x_range)):
        x = _x_pixel(epoch, x_range)
        canvas[HEIGHT - BOTTOM : HEIGHT - BOTTOM + 4, x] = AXIS_COLOUR
        _text(canvas, str(epoch), x - 4 * len(str(epoch)), HEIGHT - BOTTOM + 8)
    for value in sorted(set(y_range)):
        y = _y_pixel(value, y_range)
        canvas[y, LEFT - 4 : LEFT] = AXIS_COLOUR
        label = _number(value)
        _text(canvas, label, LEFT - 7 - 8 * len(label), y - 5)


def _number(value: float) -> str:
    text = f"{value:.4g}"
    return text if len(text) <= 8 else f"{value:.1e}"


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    s = GLYPH_SCALE
    for i, char in enumerate(text):
        bits = np.array([b == "1" for b in _GLYPHS.get(char, "0" * 15)]).reshape(5, 3)
        bits = bits.repeat(s, axis=0).repeat(s, axis=1)  # (5s, 3s)
        x0 = x + 4 * s * i
        if 0 <= x0 and x0 + 3 * s <= canvas.shape[1] and 0 <= y and y + 5 * s <= canvas.shape[0]:
            canvas[y : y + 5 * s, x0 : x0 + 3 * s][bits] = AXIS_COLOUR


def _line(canvas: np.ndarray, a: tuple[int, int], b: tuple[int, int], colour: tuple[int, int, int]) -> None:
    # Sample the segment once per pixel of its longer side, two pixels thick.
    steps = max(abs(b[0] - a[0]), abs(b[1] - a[1])) + 1
    xs = np.rint(np.linspace(a[0], b[0], steps)).astype(int)
    ys = np.rint(np.linspace(a[1], b[1], steps)).astype(int)
    for dy in (0, 1):
        canvas[np.clip(ys + dy, 0, HEIGHT - 1), np.clip(xs, 0, WIDTH - 1)] = colour


def _dot(canvas: np.ndarray, p: tuple[int, int], colour: tuple[int, int, int]) -> None:
    x, y = p
    canvas[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = colour
