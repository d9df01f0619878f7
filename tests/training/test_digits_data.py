import numpy as np
import pytest
import torch

from training.data import ImageDataset, load_dataset, load_digits_dataset


def test_digits_split_is_fixed_and_stratified(digits: ImageDataset) -> None:
    again = load_digits_dataset()
    assert torch.equal(digits.train_x, again.train_x) and torch.equal(digits.test_y, again.test_y)
    assert torch.equal(digits.val_x, again.val_x) and torch.equal(digits.val_y, again.val_y)
    assert len(digits.train_x) + len(digits.val_x) + len(digits.test_x) == 1797
    assert digits.split_record() | {"recipe": None} == {
        "recipe": None,
        "train": 1259,
        "validation": 179,
        "test": 359,
    }
    train_counts = np.bincount(digits.train_y.numpy(), minlength=10)
    val_counts = np.bincount(digits.val_y.numpy(), minlength=10)
    test_counts = np.bincount(digits.test_y.numpy(), minlength=10)
    total = train_counts + val_counts + test_counts
    assert np.all(np.abs(test_counts / total - 0.2) < 0.01)
    assert np.all(np.abs(val_counts / total - 0.1) < 0.01)


def test_digits_split_has_no_overlap(digits: ImageDataset) -> None:
    train_rows = {row.tobytes() for row in digits.train_x.numpy()}
    val_rows = {row.tobytes() for row in digits.val_x.numpy()}
    shared = sum(row.tobytes() in train_rows | val_rows for row in digits.test_x.numpy())
    assert shared <= 2  # digits has a couple of pixel-identical images; the split itself never repeats one
    assert sum(row.tobytes() in train_rows for row in digits.val_x.numpy()) <= 2


def test_digits_are_flat_float_pixels_in_unit_range(digits: ImageDataset) -> None:
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    assert digits.train_x.shape[1] == digits.input_dim == 64
    assert digits.image_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert float(digits.train_x.min()) == 0.0 and float(digits.train_x.max()) == 1.0


def test_load_dataset_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'x'; known: digits"):
        load_dataset("x")
