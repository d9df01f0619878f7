"""The in-memory dataset every loader produces, its checks, its fixed three-way split and its fingerprint.

Every dataset is split three ways, train / validation / test (`SPLIT_RECIPE`), stratified by class with
fixed seeds. Anything that *chooses* (the per-epoch held-out -ELBO, the promotion gate, hyperparameter
tuning) reads validation; the figures a model *reports* (TSTR, TRTR, the privacy and fidelity reports)
read test, which nothing is chosen on. The split never depends on the job seed: held-out metrics of two
jobs are comparable only if they are computed on the same images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# Fixed seed for the test split, deliberately independent of TrainConfig.seed; the validation split is cut
# from what remains with VALIDATION_SEED. The test split is the one the two-way split of recipe 1 held out.
SPLIT_SEED = 20240601
VALIDATION_SEED = SPLIT_SEED + 1
HELDOUT_FRACTION = 0.2  # test share of every class (of data that comes unsplit)
VALIDATION_FRACTION = 0.1  # validation share of every class, of all images (of the train part if pre-split)
SPLIT_RECIPE = "synthjobs-split/2: stratified test 0.2 (seed 20240601), then validation 0.1 (seed 20240602)"
FINGERPRINT_FORMAT = "synthjobs-dataset-fingerprint/2"


class DatasetError(ValueError):
    """The user's data cannot be trained on; the message names the problem (and the file, for files)."""


@dataclass(frozen=True)
class ImageDataset:
    """Flattened images in [0, 1] with integer labels, split into train, validation and test parts.

    `train_x`/`val_x`/`test_x` are float32 (N, D) with D = C*H*W, each row an image flattened in (C, H, W)
    order; `train_y`/`val_y`/`test_y` are int64 (N,). Validation is what choices read (see the module doc);
    it may be empty for a tiny dataset (every class of two images), and `choice_split` then falls back to
    test.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    val_x: torch.Tensor = field(kw_only=True)
    val_y: torch.Tensor = field(kw_only=True)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def choice_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of the split choices read: validation, or test when validation is empty."""
        return (self.val_x, self.val_y) if len(self.val_y) else (self.test_x, self.test_y)

    def split_record(self) -> dict[str, Any]:
        """The split sizes and recipe, as metrics.json and the model card record them."""
        return {
            "recipe": SPLIT_RECIPE,
            "train": len(self.train_y),
            "validation": len(self.val_y),
            "test": len(self.test_y),
        }


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


def validation_split(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut `fraction` of each class of `labels` (a train part) into validation: sorted (train, val) indices.

    A class keeps at least one training image, so a class with a single image left has no validation image.
    """
    rng = np.random.default_rng(VALIDATION_SEED)
    val_parts = [np.zeros(0, dtype=np.int64)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_val = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        val_parts.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val_parts))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def three_way_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, validation, test) indices of unsplit data (`SPLIT_RECIPE`), stratified by class.

    Test is exactly the held-out part of the earlier two-way split; validation is VALIDATION_FRACTION of
    each class of all images, cut from the rest.
    """
    rest, test_idx = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)
    train_rel, val_rel = validation_split(labels[rest], VALIDATION_FRACTION / (1.0 - HELDOUT_FRACTION))
    return rest[train_rel], rest[val_rel], test_idx


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
        An ImageDataset split by `three_way_split`: test is HELDOUT_FRACTION of each class (split seed
        SPLIT_SEED), validation VALIDATION_FRACTION (a class of two images has none).

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
    train_idx, val_idx, test_idx = three_way_split(labels)
    return _build(
        (nchw[train_idx], labels[train_idx]),
        (nchw[val_idx], labels[val_idx]),
        (nchw[test_idx], labels[test_idx]),
        names,
    )


def dataset_from_splits(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
) -> ImageDataset:
    """Like `dataset_from_arrays` for data that comes already split (an official test split is held out).

    The official test split is the test split; validation is VALIDATION_FRACTION of each class of the train
    part (`validation_split`).

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
    train_idx, val_idx = validation_split(train_y, VALIDATION_FRACTION)
    return _build(
        (train_x[train_idx], train_y[train_idx]),
        (train_x[val_idx], train_y[val_idx]),
        (test_x, test_y),
        names,
    )


def fingerprint(data: ImageDataset) -> str:
    """Return a sha256 hex digest of exactly what training sees.

    It covers the image shape, the class names, the three splits' float32 pixels (exact bytes,
    little-endian) and int64 labels, in split order (train, validation, test). Loaders put images in a
    canonical order (an image folder is sorted by class and file name), so the same data gives the same
    fingerprint however it was listed.
    """
    digest = hashlib.sha256()
    header = {
        "format": FINGERPRINT_FORMAT,
        "image_shape": list(data.image_shape),
        "class_names": list(data.class_names),
        "sizes": [len(data.train_y), len(data.val_y), len(data.test_y)],
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for tensor, dtype in (
        (data.train_x, "<f4"),
        (data.train_y, "<i8"),
        (data.val_x, "<f4"),
        (data.val_y, "<i8"),
        (data.test_x, "<f4"),
        (data.test_y, "<i8"),
    ):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy().astype(dtype, copy=False))
        digest.update(array.tobytes())  # (an empty validation split has no memoryview cast)
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


Part = tuple[np.ndarray, np.ndarray]  # uint8 (N, C, H, W) images and int64 (N,) labels


def _build(train: Part, val: Part, test: Part, names: tuple[str, ...]) -> ImageDataset:
    c, h, w = (int(v) for v in train[0].shape[1:])
    return ImageDataset(
        train_x=_to_unit_float(train[0]),
        train_y=torch.from_numpy(np.ascontiguousarray(train[1])),
        test_x=_to_unit_float(test[0]),
        test_y=torch.from_numpy(np.ascontiguousarray(test[1])),
        image_shape=(c, h, w),
        class_names=names,
        val_x=_to_unit_float(val[0]),
        val_y=torch.from_numpy(np.ascontiguousarray(val[1])),
    )


def _to_unit_float(nchw: np.ndarray) -> torch.Tensor:
    flat = torch.from_numpy(np.ascontiguousarray(nchw).reshape(len(nchw), int(np.prod(nchw.shape[1:]))))
    return flat.to(torch.float32).div_(255.0)


def _shape_text(chw: tuple[int, ...]) -> str:
    c, h, w = chw
    return f"{h}x{w}x{c}"
