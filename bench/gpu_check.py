"""The parts of the GPU check (`bench/gpu_check.sh`) that no other bench script measures; CUDA only.

    .venv/bin/python bench/gpu_check.py            # on a machine with CUDA; without it: one line, exit 0
    .venv/bin/python bench/gpu_check.py --device cpu --digits-samples 20000 --conv-samples 2000 \
        --identity-samples 2000 --epochs 1             # smoke run of the script itself on CPU

1. Byte identity on CUDA. A digits MLP (8x8) and a conv model (digits upscaled to 28x28) are trained briefly
   on the device and saved; two fresh processes then load each checkpoint on the device and generate the same
   shards, with `training.sample.generate`'s default copy path and with `pin_memory=True`. Printed: whether
   the sha256 of every shard is the same in both processes, and the same with and without pinned memory.
2. Sampling bare loops, in ABAB rounds on the same models (images per second, median of the rounds):
   uint8 conversion on the host (the decoder's float32 copied back, then rounded there), on the device
   (`generate`'s default: round(p * 255).to(uint8) before the copy back), and on the device into pinned host
   memory (`pin_memory=True`: asynchronous copies into one page-locked array).

Training (fp32 and bf16 autocast) and sampling through the service, next to their bare loops, are
`bench/train_throughput.py` and `bench/sample_throughput.py`, which the shell script runs after this one.
Installs nothing; prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch

from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import dataset_from_arrays, load_digits_dataset
from training.model import CVAE
from training.sample import decoder_batch, generate, shard_generator
from training.train import train

DEVICE = "cuda"  # --device sets it (cpu: a smoke run; `pin_memory` is then ignored)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digits-samples", type=int, default=1_000_000, help="per sampling round, 8x8 digits")
    p.add_argument("--conv-samples", type=int, default=200_000, help="per sampling round, 28x28 conv")
    p.add_argument("--identity-samples", type=int, default=100_000, help="per shard of the identity check")
    p.add_argument("--rounds", type=int, default=3, help="ABAB rounds of the sampling variants")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of each model")
    p.add_argument("--device", default=DEVICE, help="cuda[:N] (default cuda), or cpu for a smoke run")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one identity run
    return p.parse_args()


def labels_for(n: int, num_classes: int) -> torch.Tensor:
    return torch.arange(n) % num_classes


# --- 1. byte identity -------------------------------------------------------------------------------------


def shard_digests(checkpoint: Path, samples: int, shards: int = 2) -> dict[str, list[str]]:
    """sha256 of each shard, generated on CUDA with the default copy path and with pinned memory."""
    loaded = load_checkpoint(checkpoint.read_bytes(), device=DEVICE)
    labels = labels_for(samples, loaded.model.num_classes)
    out: dict[str, list[str]] = {}
    for name, pinned in (("default", False), ("pinned", True)):
        out[name] = [
            hashlib.sha256(
                generate(
                    loaded.model,
                    labels,
                    generator=shard_generator(0, index),
                    device=DEVICE,
                    pin_memory=pinned,
                ).tobytes()
            ).hexdigest()
            for index in range(shards)
        ]
    return out


def child_main(spec_path: Path) -> None:
    global DEVICE
    spec = json.loads(spec_path.read_text())
    DEVICE = spec["device"]
    digests = {name: shard_digests(Path(path), spec["samples"]) for name, path in spec["models"].items()}
    print(json.dumps(digests))


def identity(models: dict[str, Path], samples: int) -> None:
    """Two fresh processes generate the same shards; compare their digests and the two copy paths."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
        models_ = {k: str(v) for k, v in models.items()}
        json.dump({"models": models_, "samples": samples, "device": DEVICE}, spec)
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, __file__, "--child", spec.name], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    Path(spec.name).unlink()
    for name in models:
        first, second = runs[0][name], runs[1][name]
        across = first == second
        pinned = first["default"] == first["pinned"]
        print(
            f"gpu_check: {name}: {DEVICE} sampling byte-identical across two runs: {across}; pinned memory "
            f"gives the same bytes: {pinned} (shard 0 {first['default'][0][:16]})"
        )


# --- 2. sampling variants ---------------------------------------------------------------------------------


@torch.inference_mode()
def generate_host_conversion(model: CVAE, labels: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """`generate`'s loop with the float32 probabilities copied back and rounded to uint8 on the host."""
    c, h, w = model.image_shape
    batch_size = decoder_batch((c, h, w))  # the batches `generate` decodes in
    chunks = []
    for start in range(0, len(labels), batch_size):
        p = model.sample(labels[start : start + batch_size], generator=generator).cpu()
        chunks.append(torch.round(p * 255).to(torch.uint8))
    return torch.cat(chunks).reshape(-1, c, h, w).numpy()


def sampling_variants(name: str, model: CVAE, samples: int, rounds: int) -> None:
    labels = labels_for(samples, model.num_classes)
    model = model.to(DEVICE).eval()
    variants: dict[str, Callable[[], Any]] = {
        "uint8 on the host": lambda: generate_host_conversion(model, labels, shard_generator(0, 0)),
        "uint8 on the device (default)": lambda: generate(
            model, labels, generator=shard_generator(0, 0), device=DEVICE
        ),
        "uint8 on the device, pinned host memory": lambda: generate(
            model, labels, generator=shard_generator(0, 0), device=DEVICE, pin_memory=True
        ),
    }
    for fn in variants.values():  # warm-up: kernels, allocator, pinned host blocks
        fn()
    seconds: dict[str, list[float]] = {key: [] for key in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))  # ABAB: neither side always first
        for key in order:
            took, _ = common.timed(variants[key], DEVICE)
            seconds[key].append(took)
    base = statistics.median(seconds["uint8 on the device (default)"])
    rows = [
        [key, samples / statistics.median(s), base / statistics.median(s), 1e3 * statistics.median(s)]
        for key, s in seconds.items()
    ]
    title = f"{name}: bare sampling loop on {DEVICE}, {samples} images, median of {rounds} ABAB rounds"
    common.print_table(["variant", "images/s", "ratio to default", "ms"], rows, title=title)


# --- models -----------------------------------------------------------------------------------------------


def train_models(folder: Path, epochs: int) -> dict[str, Path]:
    """A digits MLP and a 28x28 conv model, trained on CUDA and saved as checkpoints in `folder`."""
    images, targets = common.digits_upscaled(28)
    cases = {
        "digits 8x8 MLP": (load_digits_dataset(), "mlp"),
        "digits 28x28 conv": (dataset_from_arrays(images, targets), "conv"),
    }
    paths = {}
    for name, (data, architecture) in cases.items():
        cfg = TrainConfig(epochs=epochs, seed=0, architecture=architecture)
        model = train(cfg, data, device=DEVICE).model.cpu()
        path = folder / f"{architecture}.pt"
        path.write_bytes(
            save_checkpoint(model, cfg, class_names=data.class_names, image_shape=data.image_shape)
        )
        paths[name] = path
    return paths


def main() -> None:
    global DEVICE
    args = parse_args()
    if args.child is not None:
        child_main(args.child)
        return
    DEVICE = args.device
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False): CUDA parts skipped")
        return
    started = time.perf_counter()
    print(f"device: {common.describe_device(DEVICE)}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        models = train_models(Path(tmp), args.epochs)
        identity(models, args.identity_samples)
        samples = {"digits 8x8 MLP": args.digits_samples, "digits 28x28 conv": args.conv_samples}
        for name, path in models.items():
            loaded = load_checkpoint(path.read_bytes(), device=DEVICE)
            sampling_variants(name, loaded.model, samples[name], args.rounds)
    print(f"gpu_check.py wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
