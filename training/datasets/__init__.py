"""Dataset loaders; each returns an `ImageDataset` (see `training.data` for the one-stop import)."""

from training.datasets.base import (
    HELDOUT_FRACTION,
    SPLIT_RECIPE,
    SPLIT_SEED,
    VALIDATION_FRACTION,
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    dataset_from_splits,
    fingerprint,
    stratified_split,
    three_way_split,
)
from training.datasets.digits import load_digits_dataset
from training.datasets.image_folder import decode_image_bytes, decode_image_folder
from training.datasets.torchvision_sets import TORCHVISION_DATASETS, load_torchvision_dataset

__all__ = [
    "HELDOUT_FRACTION",
    "SPLIT_RECIPE",
    "VALIDATION_FRACTION",
    "SPLIT_SEED",
    "TORCHVISION_DATASETS",
    "DatasetError",
    "ImageDataset",
    "dataset_from_arrays",
    "dataset_from_splits",
    "decode_image_bytes",
    "decode_image_folder",
    "fingerprint",
    "load_digits_dataset",
    "load_torchvision_dataset",
    "stratified_split",
    "three_way_split",
]
