"""A sampling job: load the pinned model, generate shard after shard, store them, write a manifest.

Shard `i` is generated from a random stream seeded by (job seed, i) alone and stored under
`jobs/{job_id}/shard-{i:05d}.npz`, so a retried shard overwrites the same key with the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import torch

from synthjobs.db import session_scope
from synthjobs.registry import get_model
from synthjobs.sharding import plan_shards
from training.checkpoint import LoadedCheckpoint, load_checkpoint
from training.evaluate import conditional_accuracy
from training.sample import generate, grid_png, shard_generator
from worker.context import JobCancelled, JobContext

QUALITY_SAMPLES = 2000


def run(ctx: JobContext) -> dict[str, Any]:
    """Generate every shard of a sampling job and return the job's result (the manifest's summary)."""
    ctx.progress(0.0, "loading model", force=True)
    loaded = _load_model(ctx)
    counts: list[int] = list(ctx.params["counts"])
    if len(counts) != len(loaded.class_names):
        raise ValueError(
            f"request has {len(counts)} class counts, model has {len(loaded.class_names)} classes"
        )
    plan = plan_shards(counts, int(ctx.params["shard_size"]))
    shards: list[dict[str, Any]] = []
    quality_images: list[np.ndarray] = []
    quality_labels: list[np.ndarray] = []
    for index, shard_counts in enumerate(plan):
        if ctx.cancelled():
            raise JobCancelled()
        images, labels = _generate_shard(ctx, loaded, index, shard_counts)
        shards.append(_store_shard(ctx, index, images, labels, shard_counts))
        picks = np.linspace(0, len(labels) - 1, num=min(len(labels), -(-QUALITY_SAMPLES // len(plan))))
        quality_images.append(images[picks.astype(np.int64)])
        quality_labels.append(labels[picks.astype(np.int64)])
        ctx.progress((index + 1) / len(plan), f"shard {index + 1}/{len(plan)}", force=index + 1 == len(plan))
    ctx.progress(1.0, "finalizing", force=True)
    quality = _quality(loaded, np.concatenate(quality_images), np.concatenate(quality_labels))
    return _finalize(ctx, loaded, counts, shards, quality)


def _load_model(ctx: JobContext) -> LoadedCheckpoint:
    with session_scope(ctx.database_url) as session:
        model = get_model(session, ctx.params["model_id"])
        checkpoint_uri = model.checkpoint_uri
    data = ctx.storage.get_bytes(ctx.storage.key_of(checkpoint_uri))
    return load_checkpoint(data, device=ctx.device)


def _generate_shard(
    ctx: JobContext, loaded: LoadedCheckpoint, index: int, shard_counts: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    labels = torch.repeat_interleave(torch.arange(len(shard_counts)), torch.tensor(shard_counts))
    images = generate(
        loaded.model,
        labels,
        generator=shard_generator(int(ctx.params["seed"]), index),
        temperature=float(ctx.params.get("temperature", 1.0)),
        device=ctx.device,
    )
    return images, labels.numpy().astype(np.int64)


def _store_shard(
    ctx: JobContext, index: int, images: np.ndarray, labels: np.ndarray, shard_counts: list[int]
) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels)
    payload = buffer.getvalue()
    key = f"jobs/{ctx.job_id}/shard-{index:05d}.npz"
    uri = ctx.storage.put_bytes(key, payload)
    return {
        "index": index,
        "key": key,
        "uri": uri,
        "count": int(len(labels)),
        "per_class": list(shard_counts),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }


def _quality(loaded: LoadedCheckpoint, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    if loaded.classifier is None:
        return {"conditional_accuracy": None, "reason": "model has no evaluation classifier"}
    pixels = torch.from_numpy(images.reshape(len(labels), -1).astype(np.float32) / 255.0)
    scores = conditional_accuracy(loaded.classifier.cpu(), pixels, torch.from_numpy(labels))
    return {
        "conditional_accuracy": scores["overall"],
        "per_class": scores["per_class"],
        "scored": len(labels),
    }


def _finalize(
    ctx: JobContext,
    loaded: LoadedCheckpoint,
    counts: list[int],
    shards: list[dict[str, Any]],
    quality: dict[str, Any],
) -> dict[str, Any]:
    produced = [sum(s["per_class"][c] for s in shards) for c in range(len(counts))]
    preview = min(10, max(counts))
    labels = torch.arange(len(counts)).repeat_interleave(preview)
    grid = generate(
        loaded.model,
        labels,
        generator=shard_generator(int(ctx.params["seed"]), -1),
        temperature=float(ctx.params.get("temperature", 1.0)),
        device=ctx.device,
    )
    grid_uri = ctx.storage.put_bytes(
        f"jobs/{ctx.job_id}/grid.png",
        grid_png(grid, labels.numpy(), len(counts), per_class=preview),
        "image/png",
    )
    manifest = {
        "job_id": ctx.job_id,
        "format": "npz",
        "model_id": ctx.params["model_id"],
        "seed": ctx.params["seed"],
        "temperature": ctx.params.get("temperature", 1.0),
        "class_names": list(loaded.class_names),
        "image_shape": list(loaded.image_shape),
        "requested_per_class": counts,
        "produced_per_class": produced,
        "total": sum(produced),
        "shards": [{k: v for k, v in s.items() if k != "index"} for s in shards],
        "quality": quality,
    }
    manifest_uri = ctx.storage.put_bytes(
        f"jobs/{ctx.job_id}/manifest.json", json.dumps(manifest, indent=2).encode(), "application/json"
    )
    return {
        "model_id": ctx.params["model_id"],
        "manifest_uri": manifest_uri,
        "grid_uri": grid_uri,
        "output_uris": [s["uri"] for s in shards],
        "total": sum(produced),
        "per_class": dict(zip(loaded.class_names, produced, strict=True)),
        "quality": quality,
    }
