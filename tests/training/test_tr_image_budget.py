"""Image folders under a pixel budget: dimensions come from the headers, checked before anything decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from training.data import DatasetError, decode_image_folder
from training.datasets.image_folder import decode_image_bytes, image_pixels

Image = pytest.importorskip("PIL.Image")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _folder(n: int = 3, shape: tuple[int, int] = (6, 5)) -> list[tuple[str, str, bytes]]:
    rng = np.random.default_rng(0)
    return [
        (cls, f"{i}.png", _png(rng.integers(0, 256, shape, dtype=np.uint8)))
        for cls in ("cat", "dog")
        for i in range(n)
    ]


def test_an_image_past_the_per_image_budget_is_refused_naming_it_and_the_figure(png_bomb: bytes) -> None:
    assert len(png_bomb) < 100_000
    files = [*_folder(), ("dog", "huge.png", png_bomb)]
    with pytest.raises(
        DatasetError, match=r"dog/huge.png is 16000x16000 = 256000000 pixels; .* limit is 1000000"
    ):
        decode_image_folder(files, max_image_pixels=1_000_000)
    with pytest.raises(DatasetError, match="limit is 1000000 pixels per image"):
        decode_image_bytes(png_bomb, "huge.png", max_pixels=1_000_000)


def test_pillows_own_bomb_limit_is_a_readable_dataset_error(png_bomb: bytes) -> None:
    # A deployment limit above Pillow's (2 x 89.5M pixels) still ends as a DatasetError, not a crash.
    with pytest.raises(
        DatasetError, match=r"big.png: image too large to decode \(Image size \(256000000 pixels\)"
    ):
        image_pixels(png_bomb, "big.png", max_pixels=1 << 30)


def test_a_folder_past_the_dataset_budget_is_refused_before_the_image_that_crosses_it() -> None:
    files = _folder(n=3)  # six 6x5 images: 180 pixels
    assert decode_image_folder(files, max_image_pixels=30, max_dataset_pixels=180).input_dim == 30
    with pytest.raises(DatasetError, match=r"more than 179 pixels.*\(reached at dog/2.png, image 6 of 6\)"):
        decode_image_folder(files, max_image_pixels=30, max_dataset_pixels=179)


def test_an_undecodable_file_is_still_named_under_a_budget() -> None:
    with pytest.raises(DatasetError, match="dog/notes.txt: not a decodable image"):
        decode_image_folder([*_folder(), ("dog", "notes.txt", b"hello")], max_image_pixels=100)
