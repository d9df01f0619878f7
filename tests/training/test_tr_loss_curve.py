import dataclasses
import io

import numpy as np
import pytest

from training.plots import HEIGHT, HELDOUT_COLOUR, TRAIN_COLOUR, WIDTH, loss_curve_png
from training.train import EpochMetrics, TrainResult

Image = pytest.importorskip("PIL.Image")


def _decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def _count(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((pixels == np.array(colour, dtype=np.uint8)).all(axis=2).sum())


def test_loss_curve_draws_both_series_on_a_plain_background(trained: TrainResult) -> None:
    pixels = _decode(loss_curve_png(trained.history))
    assert pixels.shape == (HEIGHT, WIDTH, 3) == (240, 480, 3)
    assert _count(pixels, TRAIN_COLOUR) > 100 and _count(pixels, HELDOUT_COLOUR) > 100
    assert _count(pixels, (255, 255, 255)) > 0.8 * HEIGHT * WIDTH
    assert _count(pixels, (0, 0, 0)) > HEIGHT  # the axes


def test_loss_curve_takes_dicts_and_is_deterministic(trained: TrainResult) -> None:
    as_dicts = [dataclasses.asdict(m) for m in trained.history]
    assert loss_curve_png(as_dicts) == loss_curve_png(trained.history)


def test_loss_curve_copes_with_one_epoch_no_epochs_and_nan() -> None:
    one = [EpochMetrics(epoch=1, epochs=1, train_loss=30.0, heldout_neg_elbo=28.0, seconds=0.1)]
    nan = [*one, EpochMetrics(epoch=2, epochs=2, train_loss=float("nan"), heldout_neg_elbo=27.0, seconds=0.1)]
    for history in (one, [], nan):
        assert _decode(loss_curve_png(history)).shape == (240, 480, 3)
