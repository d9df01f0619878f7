"""torchvision datasets from tiny fake files in torchvision's layout; nothing is ever downloaded."""

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import DatasetError, load_dataset, load_torchvision_dataset
from training.datasets.torchvision_sets import read_cifar10_batches


def _write_idx(path: Path, array: np.ndarray) -> None:
    # idx format: magic (0, 0, type 0x08 = uint8, number of dims), then each dim as big-endian int32.
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, name: str, n_train: int = 12, n_test: int = 6) -> dict[str, np.ndarray]:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for filename, array in arrays.items():
        _write_idx(raw / filename, array)
    return arrays


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_mnist_like_files_load_with_the_official_split(tmp_path: Path, name: str) -> None:
    arrays = _fake_mnist(tmp_path, name)
    data = load_torchvision_dataset(name, tmp_path)
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    # the official test split is the test split; validation is cut from the train part (classes 0 and 1
    # have two training images, the others one, which stays in train)
    assert len(data.train_y) == 10 and len(data.val_y) == 2 and len(data.test_y) == 6
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].reshape(6, -1).astype(np.float32) / 255)
    assert torch.equal(data.test_x, expected)
    assert sorted(data.val_y.tolist()) == [0, 1]
    assert sorted(data.train_y.tolist() + data.val_y.tolist()) == sorted((np.arange(12) % 10).tolist())
    if name == "MNIST":
        assert data.class_names[0] == "0 - zero"
    else:
        assert data.class_names[:2] == ("T-shirt/top", "Trouser")


def test_load_dataset_reads_torchvision_files_case_insensitively(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST")
    assert len(load_dataset("mnist", root=tmp_path).train_y) == 10


def test_missing_mnist_files_say_where_the_loader_looked_and_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_torchvision_dataset("MNIST", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "set download" in message


def test_corrupt_mnist_file_names_the_folder(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01garbage")
    with pytest.raises(DatasetError, match="could not read MNIST files in .*MNIST/raw"):
        load_torchvision_dataset("MNIST", tmp_path)


def test_missing_cifar10_files_say_where_the_loader_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_torchvision_dataset("CIFAR10", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert "set download" in message


def test_cifar10_files_with_wrong_checksums_are_not_unpickled(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]:
        (folder / name).write_bytes(b"not the official file")
    with pytest.raises(DatasetError, match="missing or corrupt"):
        load_torchvision_dataset("CIFAR10", tmp_path)


def test_verified_cifar10_batches_are_read_channel_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    batches = {
        "b1": {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 0, 1]},
        "b2": {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 0]},
        "t": {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]},
        "meta": {"label_names": ["airplane", "automobile"]},
    }
    for name, content in batches.items():
        (tmp_path / name).write_bytes(pickle.dumps(content))
    data = read_cifar10_batches(tmp_path, train_files=["b1", "b2"], test_files=["t"], meta_file="meta")
    assert data.image_shape == (3, 32, 32) and data.class_names == ("airplane", "automobile")
    assert len(data.val_y) == 2 and sorted(data.train_y.tolist() + data.val_y.tolist()) == [0, 0, 0, 1, 1, 1]
    # CIFAR rows are already (C, H, W)-flattened, which is ImageDataset's layout too.
    assert torch.equal(data.test_x, torch.from_numpy(batches["t"]["data"].astype(np.float32) / 255))


def test_cifar10_batch_without_data_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "b1").write_bytes(pickle.dumps({"labels": [0]}))
    with pytest.raises(DatasetError, match="b1 is not a CIFAR-10 batch"):
        read_cifar10_batches(tmp_path, train_files=["b1"], test_files=["b1"], meta_file="meta")


def test_unknown_torchvision_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match="unknown torchvision dataset 'SVHN'; known: MNIST, FashionMNIST, CIFAR10"
    ):
        load_torchvision_dataset("SVHN", tmp_path)
