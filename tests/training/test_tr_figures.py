"""The loss curve and the sample grid carry the words that make them readable, at a readable size."""

import dataclasses
import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from training.data import ImageDataset
from training.plots import (
    HELDOUT_LABEL,
    TRAIN_LABEL,
    loss_curve_figure,
    loss_curve_png,
    sample_grid_figure,
    sample_grid_png,
)
from training.train import EpochMetrics, TrainResult

Image = pytest.importorskip("PIL.Image")


def _decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def _texts(fig: Figure) -> set[str]:
    fig.canvas.draw()
    return {t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()}


def test_loss_curve_titles_both_axes_and_labels_the_legend(trained: TrainResult) -> None:
    fig = loss_curve_figure(trained.history)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "nats per image"
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == [TRAIN_LABEL, HELDOUT_LABEL]
    assert len(ax.get_yticklabels()) > 2  # more than the two extreme values
    assert _decode(loss_curve_png(trained.history)).shape == (360, 640, 3)


def test_loss_curve_goes_logarithmic_when_the_first_epoch_dwarfs_the_rest() -> None:
    steep = [
        EpochMetrics(epoch=e, epochs=3, train_loss=v, heldout_neg_elbo=v * 0.9, seconds=0.1)
        for e, v in ((1, 600.0), (2, 60.0), (3, 40.0))
    ]
    flat = [dataclasses.replace(m, train_loss=40.0 + m.epoch, heldout_neg_elbo=39.0) for m in steep]
    assert loss_curve_figure(steep).axes[0].get_yscale() == "log"
    assert loss_curve_figure(flat).axes[0].get_yscale() == "linear"


def test_loss_curve_copes_with_one_epoch_no_epochs_and_nan() -> None:
    one = [EpochMetrics(epoch=1, epochs=1, train_loss=30.0, heldout_neg_elbo=28.0, seconds=0.1)]
    nan = [*one, EpochMetrics(epoch=2, epochs=2, train_loss=float("nan"), heldout_neg_elbo=27.0, seconds=0.1)]
    for history in (one, [], nan, [dataclasses.asdict(m) for m in nan]):
        assert _decode(loss_curve_png(history)).shape == (360, 640, 3)


def test_sample_grid_labels_one_row_per_class_with_its_name(digits: ImageDataset) -> None:
    images = digits.train_x[:200].reshape(-1, 8, 8)
    names = [f"digit {i}" for i in range(10)]
    fig = sample_grid_figure(images, digits.train_y[:200], names, per_class=6)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    assert "6 samples per class" in _texts(fig)
    height, width = _decode(sample_grid_png(images, digits.train_y[:200], names, per_class=6)).shape[:2]
    # Each 8x8 digit (plus padding) gets ~6 screen pixels per source pixel: readable, not a thumbnail.
    assert height >= 10 * 8 * 6 and width >= 6 * 8 * 6


def test_sample_grid_pads_cells_and_leaves_missing_cells_black() -> None:
    images = np.full((1, 8, 8), 255, dtype=np.uint8)
    fig = sample_grid_figure(images, np.array([0]), ["zero", "one"], per_class=2)
    mosaic = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert mosaic.shape == (2 + 2 * 10, 2 + 2 * 10)
    assert (mosaic[2:10, 2:10] == 255).all()  # the one image
    assert (mosaic[2:10, 12:20] == 0).all() and (mosaic[12:20, 2:20:] == 0).sum() > 0  # empty cells
    assert (mosaic[:2] == 128).all() and (mosaic[:, 10:12] == 128).all()  # padding between cells
