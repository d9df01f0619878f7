import numpy as np
import pytest
import torch

from training.data import (
    HELDOUT_FRACTION,
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    dataset_from_splits,
    fingerprint,
    load_dataset,
)


def _images(n: int = 20, shape: tuple[int, ...] = (4, 5), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _labels(n: int = 20, k: int = 2) -> np.ndarray:
    return np.arange(n) % k


def test_arrays_become_a_scaled_stratified_dataset() -> None:
    images, labels = _images(50), _labels(50, 5)
    data = dataset_from_arrays(images, labels, ["a", "b", "c", "d", "e"])
    assert data.image_shape == (1, 4, 5) and data.class_names == ("a", "b", "c", "d", "e")
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert len(data.train_y) == 35 and len(data.val_y) == 5 and len(data.test_y) == 10
    assert np.bincount(data.test_y.numpy()).tolist() == [2] * 5  # 20 % of each class of 10
    assert np.bincount(data.val_y.numpy()).tolist() == [1] * 5  # 10 %
    together = torch.cat([data.train_x, data.val_x, data.test_x]) * 255
    assert torch.allclose(together.round(), together, atol=1e-4)
    assert sorted(map(tuple, together.round().to(torch.uint8).numpy())) == sorted(
        map(tuple, images.reshape(50, -1))
    )


def test_colour_arrays_are_flattened_channel_first() -> None:
    images = _images(4, (3, 2, 3))  # (N, H, W, C)
    data = dataset_from_arrays(images, np.array([0, 0, 1, 1]))
    assert data.image_shape == (3, 3, 2) and data.class_names == ("0", "1")
    rows = torch.cat([data.train_x, data.test_x])
    expected = torch.from_numpy(images[0].transpose(2, 0, 1).reshape(-1).astype(np.float32) / 255)
    assert any(torch.equal(r, expected) for r in rows)


def test_two_images_of_a_class_split_one_and_one() -> None:
    data = dataset_from_arrays(_images(4), np.array([0, 0, 1, 1], dtype=np.uint8))
    assert sorted(data.train_y.tolist()) == [0, 1] and sorted(data.test_y.tolist()) == [0, 1]
    assert len(data.val_y) == 0 and data.val_x.shape == (0, 20)  # no validation: choices read test
    assert data.choice_split()[1] is data.test_y


def test_three_images_of_a_class_split_one_each() -> None:
    data = dataset_from_arrays(_images(6), np.array([0, 0, 0, 1, 1, 1]))
    for part in (data.train_y, data.val_y, data.test_y):
        assert sorted(part.tolist()) == [0, 1]
    assert data.choice_split()[1] is data.val_y


def test_labels_of_any_integer_dtype_are_accepted() -> None:
    for dtype in (np.int8, np.uint16, np.int32, np.uint64):
        data = dataset_from_arrays(_images(6), (np.arange(6) % 3).astype(dtype))
        assert data.num_classes == 3 and data.train_y.dtype == torch.int64


@pytest.mark.parametrize(
    ("images", "labels", "names", "message"),
    [
        (_images().astype(np.float32), _labels(), None, "images must be uint8 .*got dtype float32"),
        (_images().tolist(), _labels(), None, "images must be a numpy array, got list"),
        (
            _images(20, (4,)),
            _labels(),
            None,
            r"images must be \(N, H, W\) or \(N, H, W, C\), got shape \(20, 4\)",
        ),
        (_images(20, (4, 4, 4)), _labels(), None, "images must have 1 or 3 channels .*got C=4"),
        (_images(0), _labels(0), None, "no images"),
        (_images(20, (1, 5)), _labels(), None, "images must be at least 2x2 pixels, got 1x5"),
        (_images(), _labels().astype(np.float64), None, "labels must be integers, got dtype float64"),
        (_images(), _labels().astype(bool), None, "labels must be integers, got dtype bool"),
        (_images(), _labels().reshape(10, 2), None, r"labels must be 1-D, got shape \(10, 2\)"),
        (_images(), _labels(19), None, "got 20 images but 19 labels"),
        (_images(), _labels() - 1, None, "labels must be >= 0, got -1"),
        (_images(), _labels(20, 3), ["a", "b"], "label 2 is out of range for 2 class names"),
        (_images(), _labels(), ["a", "b", "cat"], "class 'cat' has no images"),
        (_images(), np.array([0, 2] * 10), None, "class '1' has no images"),
        (
            _images(3),
            np.array([0, 0, 1]),
            ["a", "dog"],
            "class 'dog' has only 1 image; each class needs at least 2",
        ),
        (_images(), _labels(), ["a", "a"], "duplicate class names: 'a'"),
        (_images(), _labels(), ["a", ""], "class names must be non-empty strings"),
    ],
)
def test_invalid_arrays_raise_dataset_error_naming_the_problem(
    images: np.ndarray, labels: np.ndarray, names: list[str] | None, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        dataset_from_arrays(images, labels, names)


def test_dataset_error_is_a_value_error() -> None:
    # The worker fails jobs on ValueError with the message as the reason, and does not retry them.
    assert issubclass(DatasetError, ValueError)


def test_presplit_arrays_keep_their_split_and_name_the_bad_part() -> None:
    data = dataset_from_splits(_images(6), _labels(6), _images(4), _labels(4), ["x", "y"])
    # the test split is kept as given; validation is cut from the train part, one of each class of 3
    assert len(data.train_y) == 4 and len(data.val_y) == 2 and len(data.test_y) == 4
    assert torch.equal(data.test_x[0], torch.from_numpy(_images(4)[0].reshape(-1).astype(np.float32) / 255))
    with pytest.raises(DatasetError, match="test split: got 4 images but 3 labels"):
        dataset_from_splits(_images(6), _labels(6), _images(4), _labels(3), ["x", "y"])
    with pytest.raises(DatasetError, match="train images are 4x5x1 but test images are 5x4x1"):
        dataset_from_splits(_images(6), _labels(6), _images(4, (5, 4)), _labels(4), ["x", "y"])


def test_fingerprint_is_stable_and_follows_content(digits: ImageDataset) -> None:
    images, labels = _images(30), _labels(30, 3)
    a = dataset_from_arrays(images, labels, ["a", "b", "c"])
    b = dataset_from_arrays(images.copy(), labels.copy(), ["a", "b", "c"])
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 64 and int(fingerprint(a), 16) >= 0
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    assert fingerprint(dataset_from_arrays(changed, labels, ["a", "b", "c"])) != fingerprint(a)
    assert fingerprint(dataset_from_arrays(images, labels, ["a", "b", "z"])) != fingerprint(a)
    assert fingerprint(dataset_from_arrays(images, (labels + 1) % 3, ["a", "b", "c"])) != fingerprint(a)
    assert fingerprint(digits) == fingerprint(load_dataset("digits"))


def test_heldout_fraction_is_the_documented_one() -> None:
    assert HELDOUT_FRACTION == 0.2


def test_load_dataset_needs_a_root_for_torchvision_datasets() -> None:
    with pytest.raises(DatasetError, match="dataset 'MNIST' needs a root folder"):
        load_dataset("MNIST")


def test_a_dataset_without_validation_images_has_a_fingerprint() -> None:
    # every class of two images: nothing left for validation (an empty split must still hash)
    data = dataset_from_arrays(_images(4), np.array([0, 0, 1, 1]))
    assert len(data.val_y) == 0 and len(fingerprint(data)) == 64
