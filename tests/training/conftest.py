"""Fixtures for the pure training tests: no services, one torch thread."""

import pytest
import torch

from training.config import TrainConfig
from training.data import ImageDataset, load_digits_dataset
from training.train import TrainResult, train

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    return load_digits_dataset()


@pytest.fixture(scope="session")
def small_digits(digits: ImageDataset) -> ImageDataset:
    """A 320-image slice of digits: enough for the loop to do real work, quick enough for many runs."""
    return ImageDataset(
        train_x=digits.train_x[:320],
        train_y=digits.train_y[:320],
        test_x=digits.test_x[:100],
        test_y=digits.test_y[:100],
        image_shape=digits.image_shape,
        class_names=digits.class_names,
        val_x=digits.val_x[:100],
        val_y=digits.val_y[:100],
    )


@pytest.fixture(scope="session")
def trained(digits: ImageDataset) -> TrainResult:
    """A concat CVAE trained for a few epochs on the full digits split."""
    return train(TrainConfig(epochs=10, seed=3), digits)
