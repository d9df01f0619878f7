"""Datasets as in-memory tensors, with a fixed train/held-out split.

The split never depends on the job seed: held-out metrics of two jobs are comparable only if they are
computed on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Fixed seed for the train/held-out split, deliberately independent of TrainConfig.seed.
SPLIT_SEED = 20240601
HELDOUT_FRACTION = 0.2
KNOWN_DATASETS = ("digits",)


@dataclass(frozen=True)
class ImageDataset:
    """Flattened images in [0, 1] with integer labels, split into train and held-out parts.

    `train_x`/`test_x` are float32 (N, D) with D = C*H*W; `train_y`/`test_y` are int64 (N,).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w


def stratified_split(labels: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train_idx, test_idx) holding out `heldout_fraction` of each class.

    Stratifying keeps every class present in the held-out part in the same proportion as in the data.
    """
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_test = int(round(len(idx) * heldout_fraction))
        test_parts.append(rng.permutation(idx)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load_digits_dataset() -> ImageDataset:
    """Load scikit-learn's bundled 8x8 digits (1797 images); no download is ever made.

    Pixel values 0..16 are scaled to [0, 1] so they can serve as Bernoulli targets.
    """
    from sklearn.datasets import load_digits  # lazy: only this loader needs scikit-learn

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (N, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)  # (N,)
    train_idx, test_idx = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)
    flat = torch.from_numpy(images.reshape(len(images), -1).copy())  # (N, 64)
    y = torch.from_numpy(labels)
    return ImageDataset(
        train_x=flat[train_idx].contiguous(),
        train_y=y[train_idx].contiguous(),
        test_x=flat[test_idx].contiguous(),
        test_y=y[test_idx].contiguous(),
        image_shape=(1, 8, 8),
        class_names=tuple(str(i) for i in range(10)),
    )


def load_dataset(name: str) -> ImageDataset:
    """Load a dataset by name.

    Raises:
        ValueError: if `name` is not a known dataset.
    """
    if name == "digits":
        return load_digits_dataset()
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
