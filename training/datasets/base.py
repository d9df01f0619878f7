"""The in-memory dataset every loader produces, its validation, its fixed split and its fingerprint.

The split never depends on the job seed: held-out metrics of two jobs are comparable only if they are
computed on the same images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Fixed seed for the train/held-out split, deliberately independent of TrainConfig.seed.
SPLIT_SEED = 20240601
HELDOUT_FRACTION = 0.2
FINGERPRINT_FORMAT = "synthjobs-dataset-fingerprint/1"


class DatasetError(ValueError):
    """The user's data cannot be trained on; the message names the problem (and the file, for files)."""


@dataclass(frozen=True)
class ImageDataset:
    """Flattened images in [0, 1] with integer labels, split into train and held-out parts.

    `train_x`/`test_x` are float32 (N, D) with D = C*H*W, each row an image flattened in (C, H, W) order;
    `train_y`/`test_y` are int64 (N,).
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

    Stratifying keeps every class present in the held-out part in the same proportion as in the data. A class
    of two or more images always keeps at least one image on each side (so 2 images split 1/1).
    """
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_test = min(len(idx) - 1, max(1, int(round(len(idx) * heldout_fraction))))
        test_parts.append(rng.permutation(idx)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def dataset_from_arrays(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None
) -> ImageDataset:
    """Validate uint8 images and their labels, scale them to [0, 1] and split them (stratified, fixed seed).

    Args:
        images: uint8 (N, H, W) greyscale or (N, H, W, C) with C in {1, 3}; H and W at least 2.
        labels: 1-D integers in [0, K), one per image.
        class_names: K names in label order; default "0" .. str(max label). Every class needs at least two
            images: one for each side of the split.

    Returns:
        An ImageDataset whose held-out part is HELDOUT_FRACTION of each class (split seed SPLIT_SEED).

    Raises:
        DatasetError: naming the first problem found (dtype, shape, lengths, label range, a class with fewer
            than two images, no images at all).
    """
    nchw = _check_images(images)
    labels = _check_labels(labels, len(nchw))
    names = _check_class_names(class_names, labels)
    counts = np.bincount(labels, minlength=len(names))
    for name, count in zip(names, counts, strict=True):
        if count == 0:
            raise DatasetError(f"class {name!r} has no images")
        if count == 1:
            raise DatasetError(
                f"class {name!r} has only 1 image; each class needs at least 2 (one is held out)"
            )
    train_idx, test_idx = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)
    return _build(nchw[train_idx], labels[train_idx], nchw[test_idx], labels[test_idx], names)


def dataset_from_splits(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
) -> ImageDataset:
    """Like `dataset_from_arrays` for data that comes already split (an official test split is held out).

    Raises:
        DatasetError: as `dataset_from_arrays`, or if the two parts differ in image shape.
    """
    parts = []
    for what, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        try:
            nchw = _check_images(images)
            parts.append((nchw, _check_labels(labels, len(nchw))))
        except DatasetError as exc:
            raise DatasetError(f"{what} split: {exc}") from None
    (train_x, train_y), (test_x, test_y) = parts
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DatasetError(
            f"train images are {_shape_text(train_x.shape[1:])} but test images are "
            f"{_shape_text(test_x.shape[1:])}"
        )
    names = _check_class_names(class_names, np.concatenate([train_y, test_y]))
    return _build(train_x, train_y, test_x, test_y, names)


def fingerprint(data: ImageDataset) -> str:
    """Return a sha256 hex digest of exactly what training sees.

    It covers the image shape, the class names, both splits' float32 pixels (exact bytes, little-endian) and
    int64 labels, in split order. Loaders put images in a canonical order (an image folder is sorted by class
    and file name), so the same data gives the same fingerprint however it was listed.
    """
    digest = hashlib.sha256()
    header = {
        "format": FINGERPRINT_FORMAT,
        "image_shape": list(data.image_shape),
        "class_names": list(data.class_names),
        "sizes": [len(data.train_y), len(data.test_y)],
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for tensor, dtype in (
        (data.train_x, "<f4"),
        (data.train_y, "<i8"),
        (data.test_x, "<f4"),
        (data.test_y, "<i8"),
    ):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy().astype(dtype, copy=False))
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _check_images(images: np.ndarray) -> np.ndarray:
    """Return the images as a uint8 (N, C, H, W) view, or raise DatasetError."""
    if not isinstance(images, np.ndarray):
        raise DatasetError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DatasetError(f"images must be uint8 (0-255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]  # (N, 1, H, W)
    elif images.ndim == 4:
        if images.shape[3] not in (1, 3):
            raise DatasetError(f"images must have 1 or 3 channels (N, H, W, C), got C={images.shape[3]}")
        images = images.transpose(0, 3, 1, 2)  # (N, C, H, W)
    else:
        raise DatasetError(f"images must be (N, H, W) or (N, H, W, C), got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise DatasetError("no images")
    if images.shape[2] < 2 or images.shape[3] < 2:
        raise DatasetError(f"images must be at least 2x2 pixels, got {images.shape[2]}x{images.shape[3]}")
    return images


def _check_labels(labels: np.ndarray, n_images: int) -> np.ndarray:
    """Return the labels as int64 (N,), or raise DatasetError."""
    if not isinstance(labels, np.ndarray):
        raise DatasetError(f"labels must be a numpy array, got {type(labels).__name__}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise DatasetError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if len(labels) != n_images:
        raise DatasetError(f"got {n_images} images but {len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"labels must be >= 0, got {int(labels.min())}")
    if labels.dtype == np.uint64 and len(labels) and labels.max() > np.iinfo(np.int64).max:
        raise DatasetError(f"label {int(labels.max())} is out of range")
    return labels.astype(np.int64)


def _check_class_names(class_names: Sequence[str] | None, labels: np.ndarray) -> tuple[str, ...]:
    if class_names is None:
        implied = int(labels.max()) + 1
        if implied > len(labels):  # some class is empty; and a label of 10**9 must not build 10**9 names
            raise DatasetError(
                f"label {implied - 1} implies {implied} classes but there are only {len(labels)} images; "
                "labels must run from 0 to K-1 with at least 2 images each"
            )
        return tuple(str(i) for i in range(implied))
    if isinstance(class_names, str):
        raise DatasetError("class_names must be a sequence of strings, got one string")
    names = tuple(class_names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise DatasetError(f"class names must be non-empty strings, got {name!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"duplicate class names: {', '.join(map(repr, duplicates))}")
    if not names:
        raise DatasetError("class_names is empty")
    if int(labels.max()) >= len(names):
        raise DatasetError(f"label {int(labels.max())} is out of range for {len(names)} class names")
    return names


def _build(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, names: tuple[str, ...]
) -> ImageDataset:
    c, h, w = (int(v) for v in train_x.shape[1:])
    return ImageDataset(
        train_x=_to_unit_float(train_x),
        train_y=torch.from_numpy(np.ascontiguousarray(train_y)),
        test_x=_to_unit_float(test_x),
        test_y=torch.from_numpy(np.ascontiguousarray(test_y)),
        image_shape=(c, h, w),
        class_names=names,
    )


def _to_unit_float(nchw: np.ndarray) -> torch.Tensor:
    flat = torch.from_numpy(np.ascontiguousarray(nchw).reshape(len(nchw), -1))  # (N, C*H*W) uint8
    return flat.to(torch.float32).div_(255.0)


def _shape_text(chw: tuple[int, ...]) -> str:
    c, h, w = chw
    return f"{h}x{w}x{c}"
