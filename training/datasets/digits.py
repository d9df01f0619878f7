"""scikit-learn's bundled 8x8 digits: the default dataset, available without any download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.datasets.base import ImageDataset, three_way_split


def load_digits_dataset(*, size: int = 8) -> ImageDataset:
    """Load scikit-learn's bundled 8x8 digits (1797 images); no download is ever made.

    Pixel values 0..16 are scaled to [0, 1] (by 1/16, not 1/255) so they can serve as Bernoulli targets.
    `size` > 8 upscales them bilinearly to size x size (e.g. 28, to exercise the conv body on real shapes
    without downloading MNIST); the split (`three_way_split`) is the same.
    """
    from sklearn.datasets import load_digits  # lazy: only this loader needs scikit-learn

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (N, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)  # (N,)
    train_idx, val_idx, test_idx = three_way_split(labels)
    flat = torch.from_numpy(images.reshape(len(images), -1).copy())  # (N, 64)
    if size != 8:
        up = F.interpolate(torch.from_numpy(images)[:, None], size=(size, size), mode="bilinear")
        flat = up.clamp_(0.0, 1.0).reshape(len(images), -1)  # (N, size * size)
    y = torch.from_numpy(labels)
    return ImageDataset(
        train_x=flat[train_idx].contiguous(),
        train_y=y[train_idx].contiguous(),
        test_x=flat[test_idx].contiguous(),
        test_y=y[test_idx].contiguous(),
        image_shape=(1, size, size),
        class_names=tuple(str(i) for i in range(10)),
        val_x=flat[val_idx].contiguous(),
        val_y=y[val_idx].contiguous(),
    )
