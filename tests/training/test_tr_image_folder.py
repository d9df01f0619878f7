import io
import random

import numpy as np
import pytest
import torch

from training.data import DatasetError, decode_image_folder, fingerprint

Image = pytest.importorskip("PIL.Image")


def _encode(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _pixels(seed: int, shape: tuple[int, ...] = (6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _grey_folder() -> list[tuple[str, str, bytes]]:
    return [
        (cls, f"{i}.png", _encode(_pixels(10 * c + i)))
        for c, cls in enumerate(["dog", "cat"])
        for i in range(3)
    ]


def test_folder_labels_follow_sorted_class_names() -> None:
    data = decode_image_folder(_grey_folder())
    assert data.class_names == ("cat", "dog") and data.image_shape == (1, 6, 5)
    assert len(data.train_y) + len(data.val_y) + len(data.test_y) == 6
    rows = torch.cat([data.train_x, data.val_x, data.test_x])
    cat_0 = torch.from_numpy(
        _pixels(10).reshape(-1).astype(np.float32) / 255
    )  # cat is class index 1 in the list
    labels = torch.cat([data.train_y, data.test_y])
    assert any(torch.equal(r, cat_0) and int(y) == 0 for r, y in zip(rows, labels, strict=True))


def test_folder_fingerprint_does_not_depend_on_listing_order() -> None:
    files = _grey_folder()
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    assert fingerprint(decode_image_folder(files)) == fingerprint(decode_image_folder(reversed(shuffled)))


def test_colour_modes_are_converted_to_one_or_three_channels() -> None:
    rgb = _pixels(1, (4, 4, 3))
    cases = {
        "grey": (_encode(rgb[..., 0]), 1, rgb[..., 0:1]),
        "grey_alpha": (_encode(rgb[..., 0], "LA"), 1, rgb[..., 0:1]),
        "rgb": (_encode(rgb), 3, rgb),
        "rgba": (_encode(rgb, "RGBA"), 3, rgb),
        "palette": (_encode(rgb, "P"), 3, np.asarray(Image.fromarray(rgb).convert("P").convert("RGB"))),
        "grey_16bit": (_encode(rgb[..., 0].astype(np.uint16) * 257), 1, rgb[..., 0:1]),
    }
    for name, (raw, channels, expected) in cases.items():
        data = decode_image_folder([("a", "1.png", raw), ("a", "2.png", raw)])
        assert data.image_shape == (channels, 4, 4), name
        got = (data.train_x[0] * 255).round().to(torch.uint8).reshape(channels, 4, 4).permute(1, 2, 0).numpy()
        assert np.array_equal(got, expected), name


def test_jpeg_decodes_including_cmyk() -> None:
    rgb = _pixels(2, (8, 8, 3))
    for raw, channels in [
        (_encode(rgb, fmt="JPEG"), 3),
        (_encode(rgb, "CMYK", "JPEG"), 3),
        (_encode(rgb[..., 0], fmt="JPEG"), 1),
    ]:
        data = decode_image_folder([("a", "1.jpg", raw), ("a", "2.jpg", raw)])
        assert data.image_shape == (channels, 8, 8)


def test_undecodable_bytes_name_the_file() -> None:
    files = [*_grey_folder(), ("cat", "broken.png", b"\x89PNG\r\n\x1a\nnot really")]
    with pytest.raises(DatasetError, match="cat/broken.png: not a decodable image"):
        decode_image_folder(files)
    with pytest.raises(DatasetError, match="dog/notes.txt: not a decodable image"):
        decode_image_folder([*_grey_folder(), ("dog", "notes.txt", b"hello")])
    with pytest.raises(DatasetError, match="dog/empty.png: empty file"):
        decode_image_folder([*_grey_folder(), ("dog", "empty.png", b"")])


def test_a_differently_shaped_image_is_named_with_the_expected_shape() -> None:
    files = [*_grey_folder(), ("dog", "9-big.png", _encode(_pixels(5, (7, 5))))]
    with pytest.raises(DatasetError, match=r"dog/9-big.png is 7x5x1, expected 6x5x1 like cat/0.png"):
        decode_image_folder(files)
    files = [*_grey_folder(), ("dog", "9-rgb.png", _encode(_pixels(5, (6, 5, 3))))]
    with pytest.raises(DatasetError, match=r"dog/9-rgb.png is 6x5x3, expected 6x5x1"):
        decode_image_folder(files)


def test_folder_level_problems_are_dataset_errors() -> None:
    with pytest.raises(DatasetError, match="no images: the image folder is empty"):
        decode_image_folder([])
    with pytest.raises(DatasetError, match="class 'bird' has only 1 image"):
        decode_image_folder([*_grey_folder(), ("bird", "0.png", _encode(_pixels(7)))])
    with pytest.raises(DatasetError, match="cat/0.png: listed twice"):
        decode_image_folder([*_grey_folder(), ("cat", "0.png", _encode(_pixels(7)))])
    with pytest.raises(DatasetError, match="<class_name>/<image>"):
        decode_image_folder([*_grey_folder(), ("", "0.png", _encode(_pixels(7)))])


def test_animated_gif_is_refused() -> None:
    frames = [Image.fromarray(_pixels(i)) for i in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(DatasetError, match="cat/anim.gif: animated images are not supported"):
        decode_image_folder([*_grey_folder(), ("cat", "anim.gif", buffer.getvalue())])


def test_a_filename_given_as_a_path_is_named_as_given() -> None:
    files = [(c, f"{c}/{f}", raw) for c, f, raw in _grey_folder()]
    assert fingerprint(decode_image_folder(files)) == fingerprint(decode_image_folder(_grey_folder()))
    with pytest.raises(DatasetError, match=r"^cat/bad.png: not a decodable image"):
        decode_image_folder([*files, ("cat", "cat/bad.png", b"nope")])
