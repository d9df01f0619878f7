import numpy as np
import pytest
import torch

from training.classifier import (
    accuracy,
    as_flat_pixels,
    build_classifier,
    classifier_architecture,
    train_classifier,
)
from training.data import ImageDataset, dataset_from_arrays
from training.evaluate import conditional_accuracy, trtr, tstr


def _real_as_generated(data: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    # The real train split in `generate`'s output format: uint8 (N, H, W).
    pixels = (data.train_x * 255).round().to(torch.uint8).reshape(-1, 8, 8).numpy()
    return pixels, data.train_y.numpy()


def test_trtr_is_the_held_out_accuracy_of_the_evaluation_classifier(digits: ImageDataset) -> None:
    score = trtr(digits, seed=0)
    assert score == trtr(digits, seed=0)
    assert score == accuracy(train_classifier(digits, seed=0), digits.test_x, digits.test_y)
    assert score >= 0.95


def test_tstr_is_deterministic_and_trains_only_on_what_it_is_given(digits: ImageDataset) -> None:
    x, y = _real_as_generated(digits)
    a, b = tstr(x, y, digits, seed=0), tstr(x, y, digits, seed=0)
    assert a == b
    assert (
        abs(a - trtr(digits, seed=0)) < 0.02
    )  # real pixels rounded to uint8 train nearly the same classifier
    shuffled = np.random.default_rng(0).permutation(y)
    assert tstr(x, shuffled, digits, seed=0) < 0.3  # labels that do not match the images teach nothing


def test_tstr_accepts_flat_float_samples_and_rejects_mismatched_labels(digits: ImageDataset) -> None:
    x, y = _real_as_generated(digits)
    flat = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255)
    assert tstr(flat, torch.from_numpy(y), digits) == tstr(x, y, digits)
    with pytest.raises(ValueError, match="one label per generated image"):
        tstr(x, y[:-1], digits)


def test_channels_last_samples_are_flattened_channel_first() -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(
        2, 4, 4, 3
    )  # (N, H, W, C) as `generate` returns
    flat = as_flat_pixels(images, (3, 4, 4))
    assert torch.equal(flat[0], torch.from_numpy(images[0].transpose(2, 0, 1).reshape(-1) / 255).float())
    with pytest.raises(ValueError, match="do not match image shape"):
        as_flat_pixels(images, (1, 8, 8))


def test_classifier_is_a_cnn_from_16x16_and_takes_flat_pixels() -> None:
    assert classifier_architecture((1, 8, 8)) == "mlp" and classifier_architecture((1, 28, 28)) == "cnn"
    assert classifier_architecture((3, 32, 32)) == "cnn" and classifier_architecture((1, 16, 12)) == "mlp"
    for shape in [(1, 28, 28), (3, 32, 32), (1, 18, 22)]:
        model = build_classifier(shape, 7)
        assert model.architecture == "cnn" and model(torch.rand(2, int(np.prod(shape)))).shape == (2, 7)
    assert build_classifier(64, 10).architecture == "mlp"  # the old (input_dim, num_classes) call


def test_cnn_tstr_runs_on_colour_images_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.integers(0, 60, (40, 16, 16, 3), dtype=np.uint8)
    images[labels == 1, :, :, 0] += 150  # class 1 is redder
    data = dataset_from_arrays(images, labels, ["grey", "red"])
    a = tstr(images, labels, data, seed=1)
    assert a == tstr(images, labels, data, seed=1) and a == 1.0
    scores = conditional_accuracy(train_classifier(data, seed=1), images, labels)
    assert scores["overall"] == 1.0
