"""A labelled image folder (`<class_name>/<image>`) decoded into an ImageDataset.

The caller (the worker) lists the files, e.g. from an uploaded archive or object storage, and hands over
their bytes; decoding uses torchvision.io (libpng, libjpeg). A few hundred kilobytes of PNG can decode to
gigabytes, so when the caller gives a pixel budget each image's width and height are read from its header
first (Pillow reads only the header on open) and checked before anything is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import numpy as np
import torch

from training.datasets.base import DatasetError, ImageDataset, dataset_from_arrays

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of an indexed-colour PNG


def decode_image_folder(
    files: Iterable[tuple[str, str, bytes]],
    *,
    max_image_pixels: int | None = None,
    max_dataset_pixels: int | None = None,
) -> ImageDataset:
    """Decode (class_name, filename, raw bytes) items into an ImageDataset.

    `max_image_pixels` bounds each image's width x height and `max_dataset_pixels` their sum; both are read
    from the image headers before each image is decoded, so an oversized folder fails without allocating.

    Messages name a file as `class_name/filename`, or as `filename` alone if it already holds a "/" (a
    path such as "cat/0.png").
    Items are sorted by (class_name, filename) first, so the result (and its `fingerprint`) does not depend
    on listing order; labels index the sorted class names. Images are converted as follows:

    - greyscale stays 1 channel, greyscale + alpha drops the alpha;
    - RGB stays 3 channels, RGBA drops the alpha, CMYK JPEG becomes RGB;
    - indexed-colour (palette) PNG becomes RGB, whatever its palette holds;
    - 16-bit PNG is rounded to 8 bits (v / 257).

    All images must then share H, W and C; they are split as in `dataset_from_arrays`.

    Raises:
        DatasetError: on an empty class or file name, a duplicate file, undecodable bytes or an animated
            image (naming the file), an image or the folder past its pixel budget, an image whose shape
            differs from the first one's (naming it and the expected shape), or anything
            `dataset_from_arrays` rejects (e.g. a class with one image).
    """
    items = sorted(files, key=lambda item: (item[0], item[1]))
    if not items:
        raise DatasetError("no images: the image folder is empty")
    class_names = sorted({class_name for class_name, _, _ in items})
    label_of = {name: i for i, name in enumerate(class_names)}
    images: list[np.ndarray] = []
    first = ""
    previous: tuple[str, str] | None = None
    total_pixels = 0
    for class_name, filename, raw in items:
        path = filename if "/" in filename else f"{class_name}/{filename}"  # a name with "/" is a path
        if not class_name or not filename:
            raise DatasetError(f"{path!r}: images must sit in <class_name>/<image>")
        if (class_name, filename) == previous:
            raise DatasetError(f"{path}: listed twice")
        previous = (class_name, filename)
        if max_image_pixels is not None or max_dataset_pixels is not None:
            total_pixels += image_pixels(raw, path, max_image_pixels)
            if max_dataset_pixels is not None and total_pixels > max_dataset_pixels:
                raise DatasetError(
                    f"the image folder holds more than {max_dataset_pixels} pixels, this deployment's "
                    f"limit per dataset (reached at {path}, image {len(images) + 1} of {len(items)})"
                )
        image = decode_image_bytes(raw, path)  # (H, W, C)
        if not images:
            first = path
        elif image.shape != images[0].shape:
            raise DatasetError(
                f"{path} is {_shape_text(image.shape)}, expected {_shape_text(images[0].shape)} "
                f"like {first}: all images must share height, width and channels"
            )
        images.append(image)
    labels = np.array([label_of[class_name] for class_name, _, _ in items], dtype=np.int64)
    return dataset_from_arrays(np.stack(images), labels, class_names)


def decode_image_bytes(raw: bytes, path: str = "image", *, max_pixels: int | None = None) -> np.ndarray:
    """Decode one PNG/JPEG (or GIF/WebP) to uint8 (H, W, C), C in {1, 3}, converted as `decode_image_folder`.

    With `max_pixels`, the header's width x height is checked against it before decoding.

    Raises:
        DatasetError: naming `path`, if the bytes are not a single decodable image or exceed `max_pixels`.
    """
    from torchvision.io import ImageReadMode, decode_image  # lazy: torchvision takes a second to import

    if not raw:
        raise DatasetError(f"{path}: empty file")
    if max_pixels is not None:
        image_pixels(raw, path, max_pixels)
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its image codecs in favour of torchcodec; they still work, and
            # one warning per image would flood the logs of a large upload.
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            image = decode_image(data, mode=ImageReadMode.UNCHANGED)  # (C, H, W); (N, C, H, W) if animated
            if image.ndim != 3:
                raise DatasetError(f"{path}: animated images are not supported ({image.shape[0]} frames)")
            # Palette PNGs decode to their indices when UNCHANGED; 2 and 4 channels carry alpha (or CMYK).
            if _is_palette_png(raw) or image.shape[0] == 4:
                image = decode_image(data, mode=ImageReadMode.RGB)
            elif image.shape[0] == 2:
                image = decode_image(data, mode=ImageReadMode.GRAY)
    except RuntimeError as exc:
        raise DatasetError(f"{path}: not a decodable image ({_first_line(exc)})") from exc
    if image.dtype == torch.uint16:
        image = ((image.to(torch.int32) + 128) // 257).to(torch.uint8)  # round(v / 257): 65535 -> 255
    if image.dtype != torch.uint8 or image.shape[0] not in (1, 3):
        raise DatasetError(f"{path}: unsupported pixel format ({image.dtype}, {image.shape[0]} channels)")
    return image.permute(1, 2, 0).contiguous().numpy()  # (H, W, C)


def image_pixels(raw: bytes, path: str = "image", max_pixels: int | None = None) -> int:
    """Width x height of an encoded image, from its header alone (nothing is decoded).

    Raises:
        DatasetError: naming `path`, if the bytes are not an image Pillow can identify, the image is past
            `max_pixels` (or Pillow's own decompression-bomb limit), or it is animated.
    """
    from PIL import Image, UnidentifiedImageError  # lazy: only image folders need it

    if not raw:
        raise DatasetError(f"{path}: empty file")
    if (size := _png_size(raw)) is not None:  # before Pillow, whose own bomb check would word it otherwise
        _check_pixels(path, *size, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            with Image.open(io.BytesIO(raw)) as image:  # reads the header only
                width, height = image.size
                pixels = _check_pixels(path, width, height, max_pixels)
                if getattr(image, "is_animated", False):
                    raise DatasetError(f"{path}: animated images are not supported")
    except Image.DecompressionBombError as exc:
        limit = f"; this deployment's limit is {max_pixels} pixels per image" if max_pixels else ""
        raise DatasetError(f"{path}: image too large to decode ({exc}){limit}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: not a decodable image ({_first_line(exc)})") from exc
    return pixels


def _check_pixels(path: str, width: int, height: int, max_pixels: int | None) -> int:
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise DatasetError(
            f"{path} is {width}x{height} = {pixels} pixels; this deployment's limit is {max_pixels} pixels "
            "per image"
        )
    return pixels


def _png_size(raw: bytes) -> tuple[int, int] | None:
    # IHDR is always the first chunk: signature (8), length (4), b"IHDR" (4), width (4), height (4).
    if raw[:8] != _PNG_SIGNATURE or raw[12:16] != b"IHDR" or len(raw) < 24:
        return None
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def _is_palette_png(raw: bytes) -> bool:
    # IHDR is always the first chunk: signature (8), length (4), b"IHDR" (4), width, height (8), depth (1).
    return raw[:8] == _PNG_SIGNATURE and raw[12:16] == b"IHDR" and len(raw) > 25 and raw[25] == _PNG_PALETTE


def _shape_text(hwc: tuple[int, ...]) -> str:
    h, w, c = hwc
    return f"{h}x{w}x{c}"


def _first_line(exc: Exception) -> str:
    # torchvision prefixes its messages with a C++ source location: keep the human part.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(", ", 1)[-1] if "csrc" in text else text
