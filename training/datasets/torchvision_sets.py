"""MNIST, FashionMNIST and CIFAR10 from torchvision's files: the official test split is held out.

Nothing is downloaded unless the caller asks (`download=True`); a missing file is the user's to fix, so it
raises DatasetError saying where the loader looked. Download failures themselves (network, disk) propagate
as the infrastructure errors they are.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from training.datasets.base import DatasetError, ImageDataset, dataset_from_splits

TORCHVISION_DATASETS = ("MNIST", "FashionMNIST", "CIFAR10")


def load_torchvision_dataset(name: str, root: str | Path, *, download: bool = False) -> ImageDataset:
    """Load a torchvision dataset from `root` (torchvision's own layout under it).

    Args:
        name: "MNIST", "FashionMNIST" or "CIFAR10" (case-insensitive).
        root: the folder holding `MNIST/raw/...`, `FashionMNIST/raw/...` or `cifar-10-batches-py/...`.
        download: fetch missing files into `root` first.

    Returns:
        An ImageDataset: the official train split for training, the official test split held out, class
        names from the dataset (e.g. "0 - zero" for MNIST).

    Raises:
        DatasetError: unknown name, files missing (and download not set), or files that cannot be read.
    """
    canonical = {n.lower(): n for n in TORCHVISION_DATASETS}.get(str(name).lower())
    if canonical is None:
        raise DatasetError(f"unknown torchvision dataset {name!r}; known: {', '.join(TORCHVISION_DATASETS)}")
    root = Path(root)
    if canonical == "CIFAR10":
        return _load_cifar10(root, download)
    return _load_mnist_like(canonical, root, download)


def _load_mnist_like(name: str, root: Path, download: bool) -> ImageDataset:
    import torchvision.datasets  # lazy: torchvision takes about a second to import; only loaders need it

    cls = getattr(torchvision.datasets, name)
    raw = root / name / "raw"
    expected = [Path(filename).stem for filename, _ in cls.resources]  # "train-images-idx3-ubyte.gz" -> ...
    missing = [f for f in expected if not (raw / f).is_file()]
    if missing:
        if not download:
            raise DatasetError(
                f"{name} files not found in {raw} (missing {', '.join(missing)}); "
                "set download in the request to fetch them"
            )
        cls(str(root), train=True, download=True)  # network errors propagate: they are not the data's fault
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except (
        Exception
    ) as exc:  # torchvision's idx reader raises TypeError, ValueError, KeyError, RuntimeError...
        raise DatasetError(f"could not read {name} files in {raw}: {type(exc).__name__}: {exc}") from exc
    return dataset_from_splits(
        train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy(), list(cls.classes)
    )


def _load_cifar10(root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    folder = root / CIFAR10.base_folder
    files = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]

    def failing() -> list[str]:
        return [f for f, md5 in files if not check_integrity(str(folder / f), md5)]

    bad = failing()
    if bad and download:
        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        bad = failing()
    if bad:
        raise DatasetError(
            f"CIFAR10 files missing or corrupt in {folder} ({', '.join(bad)}); "
            "set download in the request to fetch them"
        )
    return read_cifar10_batches(
        folder,
        train_files=[f for f, _ in CIFAR10.train_list],
        test_files=[f for f, _ in CIFAR10.test_list],
        meta_file=CIFAR10.meta["filename"],
    )


def read_cifar10_batches(
    folder: Path, *, train_files: list[str], test_files: list[str], meta_file: str
) -> ImageDataset:
    """Read CIFAR-10's pickled batches from `folder`.

    Only call this on files whose md5 matched the official ones (as `load_torchvision_dataset` does): they
    are pickles, and unpickling an untrusted file can run code. Each batch holds "data" uint8 (N, 3072) in
    (C, H, W) order and "labels"; the meta file holds "label_names".
    """

    def read(name: str) -> dict:
        try:
            with open(folder / name, "rb") as f:
                # Only md5-verified official batches reach this (see the docstring).
                return pickle.load(f, encoding="latin1")  # nosec B301
        except Exception as exc:
            raise DatasetError(f"could not read {folder / name}: {type(exc).__name__}: {exc}") from exc

    def part(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        datas, labels = [], []
        for name in names:
            batch = read(name)
            try:
                datas.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch["labels"], dtype=np.int64).reshape(-1))
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{folder / name} is not a CIFAR-10 batch: {type(exc).__name__}: {exc}"
                ) from exc
        return np.concatenate(datas).transpose(0, 2, 3, 1), np.concatenate(labels)  # (N, 32, 32, 3), (N,)

    (train_x, train_y), (test_x, test_y) = part(train_files), part(test_files)
    meta = read(meta_file)
    if not isinstance(meta, dict) or "label_names" not in meta:
        raise DatasetError(f"{folder / meta_file} has no label_names")
    class_names = [str(n) for n in meta["label_names"]]
    return dataset_from_splits(train_x, train_y, test_x, test_y, class_names)
