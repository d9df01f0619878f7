"""Bulk generation of labelled images, and a PNG preview grid.

Shards of a bulk job are generated independently (possibly on different workers, possibly twice after a
redelivery); each draws its latents from `shard_generator(seed, shard_index)`, so a shard's images are
the same whenever and wherever it is generated.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from training.model import CVAE

# Version of the generation recipe (how latents are drawn and batched). The decoder batch is part of the bytes
# contract (kernels may round differently by batch size), so a change of `decoder_batch` bumps this, every
# worker must run the same one, and the manifest records it. 1: batch 4096 always; 2: batch capped by size.
GENERATION_RECIPE = 2
MAX_DECODER_BATCH = 4096
# Output values per decoder batch (2**19): keeps a batch's activations under glibc's 32 MiB mmap cap, so the
# heap reuses them (8x8 digits keep 4096; 28x28 gets 512, measured 1.37x faster with 23 % less peak RSS).
DECODER_BATCH_VALUES = 1 << 19


def decoder_batch(image_shape: tuple[int, int, int]) -> int:
    """Images per decoder call for `image_shape` (recipe 2): the largest power of two within the budget."""
    c, h, w = image_shape
    fit = max(1, min(MAX_DECODER_BATCH, DECODER_BATCH_VALUES // max(1, c * h * w)))
    return 1 << (fit.bit_length() - 1)


class GenerationStopped(Exception):
    """`generate` was told to stop (its `should_stop` returned True) before it had decoded every batch."""


def shard_generator(seed: int, shard_index: int) -> torch.Generator:
    """Return a CPU generator seeded from (seed, shard_index) only.

    The seed is a stable hash (sha256, not Python's salted `hash`) truncated to 63 bits, so neighbouring
    shards get unrelated streams and the value never changes between processes or machines.
    """
    digest = hashlib.sha256(f"synthjobs-shard:{int(seed)}:{int(shard_index)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def shard_permutation(seed: int, shard_index: int, n: int) -> torch.Tensor:
    """A random order of `n` items fixed by (seed, shard_index) alone, independent of the latents' stream.

    Used to shuffle a shard's labels before generation, so its samples are not sorted by class and a rerun
    still gives the same bytes.
    """
    digest = hashlib.sha256(f"synthjobs-shuffle:{int(seed)}:{int(shard_index)}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
    return torch.randperm(n, generator=generator)


@torch.inference_mode()
def generate(
    model: CVAE,
    labels: torch.Tensor,
    *,
    generator: torch.Generator,
    temperature: float = 1.0,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    image_shape: tuple[int, int, int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    pin_memory: bool = False,
) -> np.ndarray:
    """Generate one image per label as uint8.

    Latents are drawn from `generator` batch after batch, in label order, on the generator's device; the
    same model, labels, generator state, temperature and batch_size therefore give byte-identical output.
    Pixel values are round(p * 255), computed on `device` before the copy back.

    Args:
        model: a CVAE; it is moved to `device` and put in eval mode.
        labels: int64 (N,) class of each image.
        generator: source of latents; advanced by the call.
        temperature: scales the prior's standard deviation.
        batch_size: images per decoder call; default `decoder_batch(image_shape)` (GENERATION_RECIPE).
        device: where to decode.
        image_shape: (C, H, W); defaults to `model.image_shape` (set by training and by load_checkpoint).
        should_stop: polled before each batch; when it returns True, GenerationStopped is raised.
        pin_memory: on CUDA, copy each batch with `non_blocking=True` into one preallocated page-locked
            host array (the device decodes the next batch while the copy runs); the bytes are the same.
            Ignored off CUDA, where the path is exactly the default one.

    Returns:
        uint8 array (N, H, W) for one channel, (N, H, W, C) otherwise.

    Raises:
        GenerationStopped: if `should_stop` returned True.
    """
    shape = image_shape or model.image_shape
    if shape is None:
        raise ValueError("image_shape is unknown: pass image_shape or use a model with model.image_shape set")
    c, h, w = shape
    batch_size = batch_size or decoder_batch((c, h, w))
    model = model.to(device).eval()
    labels = labels.to(torch.int64).reshape(-1)
    if pin_memory and torch.device(device).type == "cuda":
        return _generate_pinned(model, labels, generator, temperature, batch_size, (c, h, w), should_stop)
    chunks = []
    for start in range(0, len(labels), batch_size):
        if should_stop is not None and should_stop():
            raise GenerationStopped(f"stopped after {start} of {len(labels)} images")
        p = model.sample(labels[start : start + batch_size], generator=generator, temperature=temperature)
        chunks.append(torch.round(p * 255).to(torch.uint8).cpu())  # (B, D)
    flat = torch.cat(chunks) if chunks else torch.empty((0, c * h * w), dtype=torch.uint8)
    return _to_images(flat, (c, h, w))


def _generate_pinned(
    model: CVAE,
    labels: torch.Tensor,
    generator: torch.Generator,
    temperature: float,
    batch_size: int,
    shape: tuple[int, int, int],
    should_stop: Callable[[], bool] | None,
) -> np.ndarray:
    """`generate`'s loop on CUDA with asynchronous copies into one page-locked (N, D) uint8 array.

    The same ops in the same order as the default loop (so the same bytes); only where each batch lands on
    the host differs. One synchronize at the end makes every copy visible before numpy reads the array.
    """
    c, h, w = shape
    flat = torch.empty((len(labels), c * h * w), dtype=torch.uint8, pin_memory=True)
    for start in range(0, len(labels), batch_size):
        if should_stop is not None and should_stop():
            torch.cuda.synchronize()
            raise GenerationStopped(f"stopped after {start} of {len(labels)} images")
        batch = labels[start : start + batch_size]
        p = model.sample(batch, generator=generator, temperature=temperature)
        flat[start : start + len(batch)].copy_(torch.round(p * 255).to(torch.uint8), non_blocking=True)
    torch.cuda.synchronize()
    return _to_images(flat, shape)


def _to_images(flat: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """(N, D) uint8 → (N, H, W) for one channel, (N, H, W, C) otherwise."""
    c, h, w = shape
    images = flat.reshape(-1, c, h, w).numpy()
    return images[:, 0] if c == 1 else np.ascontiguousarray(images.transpose(0, 2, 3, 1))


# Output values per chunk of `generate_chunks` (1 MiB of uint8): a few decoder batches, so a shard has several
# chunks for its encoding to overlap with, and handing one over costs little against generating it.
CHUNK_VALUES = 1 << 20


def chunk_size(image_shape: tuple[int, int, int]) -> int:
    """Images per chunk for `image_shape`: a whole number of decoder batches, about CHUNK_VALUES values."""
    c, h, w = image_shape
    batch = decoder_batch(image_shape)
    return batch * max(1, CHUNK_VALUES // (batch * c * h * w))


def generate_chunks(
    model: CVAE,
    labels: torch.Tensor,
    *,
    generator: torch.Generator,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    image_shape: tuple[int, int, int] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[np.ndarray]:
    """`generate`'s images for `labels`, yielded in order in chunks of `chunk_size` images.

    Each chunk is a whole number of decoder batches drawn from the same `generator` in turn, so the chunks
    put together are byte for byte what one `generate` call returns (the recipe's batches, the same
    latents in the same order); the caller can encode a chunk while the next is generated.
    """
    shape = image_shape or model.image_shape
    if shape is None:
        raise ValueError("image_shape is unknown: pass image_shape or use a model with model.image_shape set")
    step = chunk_size(shape)
    for start in range(0, len(labels), step):
        yield generate(
            model,
            labels[start : start + step],
            generator=generator,
            temperature=temperature,
            device=device,
            image_shape=shape,
            should_stop=should_stop,
        )


def grid_png(
    images: np.ndarray, labels: np.ndarray, num_classes: int, per_class: int = 10, scale: int = 4
) -> bytes:
    """Return a PNG with one row per class holding its first `per_class` images, upscaled by `scale`.

    Cells of a class with fewer images stay black. Images are uint8 (N, H, W) or (N, H, W, C).
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels).reshape(-1)
    h, w = images.shape[1:3]
    grid = np.zeros((num_classes * h, per_class * w, *images.shape[3:]), dtype=np.uint8)
    for cls in range(num_classes):
        for col, i in enumerate(np.flatnonzero(labels == cls)[:per_class]):
            grid[cls * h : (cls + 1) * h, col * w : (col + 1) * w] = images[i]
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)  # nearest-neighbour upscaling
    return encode_png(grid)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA array as PNG.

    A few lines of zlib keep `training/` free of an image library dependency.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)  # filter 0

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )
