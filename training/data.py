"""Datasets as in-memory tensors with a fixed train/validation/test split: the one import for callers.

The loaders live in `training.datasets` (one module per source); this module re-exports them and adds
`load_dataset`, which picks a loader by name.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets import (
    HELDOUT_FRACTION,
    SPLIT_RECIPE,
    SPLIT_SEED,
    TORCHVISION_DATASETS,
    VALIDATION_FRACTION,
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    dataset_from_splits,
    decode_image_folder,
    fingerprint,
    load_digits_dataset,
    load_torchvision_dataset,
    stratified_split,
    three_way_split,
)

KNOWN_DATASETS = ("digits", *TORCHVISION_DATASETS)

__all__ = [
    "HELDOUT_FRACTION",
    "SPLIT_RECIPE",
    "VALIDATION_FRACTION",
    "KNOWN_DATASETS",
    "SPLIT_SEED",
    "DatasetError",
    "ImageDataset",
    "dataset_from_arrays",
    "dataset_from_splits",
    "decode_image_folder",
    "fingerprint",
    "load_dataset",
    "load_digits_dataset",
    "load_torchvision_dataset",
    "stratified_split",
    "three_way_split",
]


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = False) -> ImageDataset:
    """Load a dataset by name: "digits" (bundled) or a torchvision dataset read from `root`.

    Raises:
        DatasetError: if `name` is not a known dataset, a torchvision dataset is asked for without `root`,
            or its files are missing (see `load_torchvision_dataset`).
    """
    if name == "digits":
        return load_digits_dataset()
    if name.lower() in (n.lower() for n in TORCHVISION_DATASETS):
        if root is None:
            raise DatasetError(f"dataset {name!r} needs a root folder to read its files from")
        return load_torchvision_dataset(name, root, download=download)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
