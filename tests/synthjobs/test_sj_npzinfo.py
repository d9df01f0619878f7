"""Reading an .npz's headers without numpy: shapes, decoded size, and archives that lie about either."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import numpy as np
import pytest

from synthjobs.rules.npzinfo import (
    NpzError,
    NpzTooLarge,
    check_dataset_arrays,
    decoded_size,
    read_npz_headers,
)

BuildNpz = Callable[[dict[str, tuple[str, tuple[int, ...], int]]], bytes]


def _savez(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_the_decoded_size_is_what_numpy_writes(compressed: bool) -> None:
    images, labels = np.zeros((10, 6, 5, 3), np.uint8), np.arange(10)
    payload = _savez(compressed, images=images, labels=labels, class_names=np.array(["a", "bb"]))
    arrays = read_npz_headers(payload)
    assert arrays["images"].shape == (10, 6, 5, 3) and arrays["images"].nbytes == images.nbytes
    assert arrays["class_names"].itemsize == 8 and arrays["class_names"].nbytes == 16  # '<U2'
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert decoded_size(arrays) == sum(m.file_size for m in archive.infolist())
    assert check_dataset_arrays(arrays, max_decoded_bytes=decoded_size(arrays)) == arrays["images"]


def test_a_zip_bomb_is_refused_by_its_decoded_size_with_the_figure(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 1 << 20
    arrays = read_npz_headers(zip_bomb)
    with pytest.raises(NpzTooLarge, match=r"would take 134\d{6} bytes \(134 MB\) decoded.*limit is 1000000"):
        check_dataset_arrays(arrays, max_decoded_bytes=1_000_000)


def test_a_header_declaring_more_than_the_member_holds_is_refused(build_npz: BuildNpz) -> None:
    # 3 GB declared by the header, 64 bytes of data: numpy would allocate by the header.
    payload = build_npz({"images": ("|u1", (3000, 1000, 1000), 64), "labels": ("<i8", (3000,), 24000)})
    with pytest.raises(
        NpzError, match=r"images.npy declares \d+ bytes uncompressed but its header describes"
    ):
        read_npz_headers(payload)


@pytest.mark.parametrize(
    ("descr", "shape", "message"),
    [
        ("|u1", (-1, 8, 8), "dimensions must be integers >= 0"),
        ("|u1", (2**62, 2**62), "declares .* but its header describes"),  # overflows int64, not Python
        ("|u1", (2.5, 8), "dimensions must be integers >= 0"),
        ("|u1", (True, 8), "dimensions must be integers >= 0"),
        ("|O", (4,), "pickles are refused"),
        ("<M8[ns]", (4,), "unsupported dtype"),
        ("|u1", (1,) * 40, "unreadable shape"),
    ],
)
def test_headers_with_impossible_shapes_or_dtypes_are_refused(
    build_npz: BuildNpz, descr: str, shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(NpzError, match=message):
        read_npz_headers(build_npz({"images": (descr, shape, 0)}))


def test_a_structured_dtype_is_refused() -> None:
    payload = _savez(images=np.zeros(3, dtype=[("a", "u1"), ("b", "<i4")]))
    with pytest.raises(NpzError, match="structured dtype"):
        read_npz_headers(payload)


def test_an_archive_of_many_members_is_refused_before_they_are_parsed() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(1000):
            archive.writestr(f"a{i}.npy", b"")
    with pytest.raises(NpzError, match="has 1000 members; an .npz dataset has at most 16"):
        read_npz_headers(buffer.getvalue())


def test_a_member_listed_twice_is_refused() -> None:
    one = io.BytesIO()
    np.save(one, np.zeros(2, np.uint8))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("images.npy", one.getvalue())
        archive.writestr("images.npy", one.getvalue())
    with pytest.raises(NpzError, match="appears twice"):
        read_npz_headers(buffer.getvalue())
