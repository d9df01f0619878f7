"""The figures people look at: the loss curve and the labelled sample grid, drawn with matplotlib.

Drawn through matplotlib's object-oriented API on the Agg canvas (no pyplot, so no global figure state
and no display backend in a worker). The pictures need not be byte-identical between runs; the shard bytes,
written elsewhere, stay deterministic. The same PNGs feed storage, the model card and the dashboard.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
LOSS_SIZE_INCHES = (6.4, 3.6)  # 640x360 pixels
TRAIN_LABEL, HELDOUT_LABEL = "train", "held-out"
# Above this max/min ratio the y axis goes logarithmic, so a steep first epoch does not flatten the rest.
LOG_SCALE_RATIO = 3.0
CELL_PAD = 2  # pixels of grey between grid cells, in source pixels
SCREEN_PIXELS_PER_SOURCE_PIXEL = 6  # an 8x8 digit becomes about 48x48 screen pixels
PAD_VALUE = 128


def loss_curve_figure(history: Sequence[Any]) -> Figure:
    """The loss curve: training loss and held-out -ELBO in nats per image, per epoch.

    Args:
        history: `EpochMetrics` or dicts with "epoch", "train_loss" and "heldout_neg_elbo". Non-finite
            and missing (None: an epoch `eval_every` did not evaluate) values are left out; an empty
            history gives titled, empty axes.
    """
    rows = [_as_dict(m) for m in history]
    epochs = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=LOSS_SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values: list[float] = []
    for key, label in (("train_loss", TRAIN_LABEL), ("heldout_neg_elbo", HELDOUT_LABEL)):
        points = [
            (e, float(r[key]))
            for e, r in zip(epochs, rows, strict=True)
            if r[key] is not None and math.isfinite(float(r[key]))
        ]
        values += [v for _, v in points]
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=label)
    if values and min(values) > 0 and max(values) / min(values) > LOG_SCALE_RATIO:
        ax.set_yscale("log")
    ax.set_title("Loss per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.grid(True, alpha=0.3)
    if epochs:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def sample_grid_figure(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], per_class: int = 10
) -> Figure:
    """One labelled row per class holding its first `per_class` images, with padding between cells.

    Cells of a class with fewer images stay black. Images are uint8 (N, H, W) or (N, H, W, C).
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels).reshape(-1)
    h, w = images.shape[1:3]
    rows, step_h, step_w = len(class_names), h + CELL_PAD, w + CELL_PAD
    mosaic = np.full(
        (rows * step_h + CELL_PAD, per_class * step_w + CELL_PAD, *images.shape[3:]), PAD_VALUE, np.uint8
    )
    for cls in range(rows):
        top = CELL_PAD + cls * step_h
        for col in range(per_class):
            mosaic[top : top + h, CELL_PAD + col * step_w : CELL_PAD + col * step_w + w] = 0
        for col, i in enumerate(np.flatnonzero(labels == cls)[:per_class]):
            left = CELL_PAD + col * step_w
            mosaic[top : top + h, left : left + w] = images[i]
    scale = SCREEN_PIXELS_PER_SOURCE_PIXEL / DPI
    label_room = 0.25 + 0.08 * max((len(str(n)) for n in class_names), default=1)
    fig = Figure(figsize=(mosaic.shape[1] * scale + label_room + 0.2, mosaic.shape[0] * scale + 0.6), dpi=DPI)
    FigureCanvasAgg(fig)
    width, height = fig.get_size_inches()
    ax = fig.add_axes(
        (label_room / width, 0.1 / height, mosaic.shape[1] * scale / width, mosaic.shape[0] * scale / height)
    )
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([CELL_PAD + cls * step_h + (h - 1) / 2 for cls in range(rows)])
    ax.set_yticklabels([str(n) for n in class_names])
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(f"{per_class} samples per class", y=1 - 0.05 / height, va="top", fontsize=10)
    return fig


def loss_curve_png(history: Sequence[Any]) -> bytes:
    """PNG bytes of `loss_curve_figure(history)`."""
    return figure_png(loss_curve_figure(history))


def sample_grid_png(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], per_class: int = 10
) -> bytes:
    """PNG bytes of `sample_grid_figure(...)`."""
    return figure_png(sample_grid_figure(images, labels, class_names, per_class))


def figure_png(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes at its own size and DPI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _as_dict(metrics: Any) -> dict[str, Any]:
    return asdict(metrics) if is_dataclass(metrics) and not isinstance(metrics, type) else dict(metrics)
