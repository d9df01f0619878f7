"""A training job: job row → TrainConfig → training/ → checkpoint, metrics and grid in storage → model row.

Object keys come from the model id, which is derived from the job id, so a retried job overwrites its own
objects and registers the same model rather than a second one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from synthjobs.db import session_scope
from synthjobs.registry import model_id_for_job, register_model
from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.data import ImageDataset, load_dataset
from training.evaluate import conditional_accuracy, train_classifier
from training.sample import generate, grid_png, shard_generator
from training.train import EpochMetrics, TrainResult, train
from worker.context import JobCancelled, JobContext

# Share of the progress bar given to the epochs; the rest is evaluation and upload.
TRAIN_SHARE = 0.9


def run(ctx: JobContext) -> dict[str, Any]:
    """Train, evaluate, store and register the model of a training job; return the job's result."""
    cfg = TrainConfig.from_dict(ctx.params["config"])
    ctx.progress(0.0, "loading data", force=True)
    data = load_dataset(cfg.dataset)
    ctx.event("data", f"loaded {cfg.dataset}: {len(data.train_y)} train, {len(data.test_y)} held-out images")
    outcome = _train(ctx, cfg, data)
    if outcome.stopped:
        raise JobCancelled()
    ctx.progress(TRAIN_SHARE, "evaluating", force=True)
    classifier = train_classifier(data, seed=cfg.seed, device=ctx.device)
    metrics = _metrics(ctx, outcome, classifier, data, cfg)
    ctx.progress(0.95, "uploading", force=True)
    return _store(ctx, cfg, data, outcome, classifier, metrics)


def _train(ctx: JobContext, cfg: TrainConfig, data: ImageDataset) -> TrainResult:
    def on_epoch(m: EpochMetrics) -> None:
        phase = f"epoch {m.epoch}/{m.epochs}"
        ctx.progress(TRAIN_SHARE * m.epoch / m.epochs, phase, force=True)
        ctx.event(
            "epoch",
            f"{phase}: train loss {m.train_loss:.2f}, held-out -ELBO {m.heldout_neg_elbo:.2f}",
            {**asdict(m), "device": str(ctx.device)},
        )

    def on_batch(step: int, total_steps: int) -> None:
        epoch = min(cfg.epochs, 1 + (step - 1) * cfg.epochs // total_steps)
        ctx.progress(TRAIN_SHARE * step / total_steps, f"epoch {epoch}/{cfg.epochs}")

    return train(
        cfg, data, device=ctx.device, on_epoch=on_epoch, on_batch=on_batch, should_stop=ctx.cancelled
    )


def _metrics(
    ctx: JobContext, outcome: TrainResult, classifier: torch.nn.Module, data: ImageDataset, cfg: TrainConfig
) -> dict[str, Any]:
    per_class = int(ctx.params.get("eval_samples_per_class", 100))
    labels = torch.arange(data.num_classes).repeat_interleave(per_class)
    images = generate(outcome.model, labels, generator=shard_generator(cfg.seed, 0), device=ctx.device)
    pixels = torch.from_numpy(images.reshape(len(labels), -1).astype(np.float32) / 255.0)
    accuracy = conditional_accuracy(classifier, pixels, labels)
    return {
        "heldout_neg_elbo": outcome.final.heldout_neg_elbo,
        "train_loss": outcome.final.train_loss,
        "epochs": outcome.final.epoch,
        "conditional_accuracy": accuracy["overall"],
        "conditional_accuracy_per_class": accuracy["per_class"],
        "eval_samples_per_class": per_class,
        "history": [asdict(m) for m in outcome.history],
    }


def _store(
    ctx: JobContext,
    cfg: TrainConfig,
    data: ImageDataset,
    outcome: TrainResult,
    classifier: torch.nn.Module,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    model_id = model_id_for_job(ctx.job_id)
    summary = {k: v for k, v in metrics.items() if k != "history"}
    checkpoint = save_checkpoint(
        outcome.model,
        cfg,
        class_names=data.class_names,
        image_shape=data.image_shape,
        metrics=summary,
        classifier=classifier,
    )
    started = time.monotonic()
    checkpoint_uri = ctx.storage.put_bytes(f"models/{model_id}/checkpoint.pt", checkpoint)
    metrics_uri = ctx.storage.put_bytes(
        f"models/{model_id}/metrics.json", json.dumps(metrics, indent=2).encode(), "application/json"
    )
    labels = torch.arange(data.num_classes).repeat_interleave(10)
    grid = generate(outcome.model, labels, generator=shard_generator(cfg.seed, 1), device=ctx.device)
    grid_uri = ctx.storage.put_bytes(
        f"models/{model_id}/samples.png", grid_png(grid, labels.numpy(), data.num_classes), "image/png"
    )
    ctx.event(
        "uploaded",
        f"model artifacts stored in {time.monotonic() - started:.2f}s",
        {"checkpoint_uri": checkpoint_uri, "bytes": len(checkpoint)},
    )
    dataset = {
        "name": cfg.dataset,
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "train_size": len(data.train_y),
        "heldout_size": len(data.test_y),
    }
    with session_scope(ctx.database_url) as session:
        model = register_model(
            session,
            model_id=model_id,
            name=ctx.params["model_name"],
            training_job_id=ctx.job_id,
            checkpoint_uri=checkpoint_uri,
            hyperparameters=cfg.to_dict(),
            metrics=summary,
            dataset=dataset,
        )
        name, version = model.name, model.version
    return {
        "model_id": model_id,
        "model_name": name,
        "model_version": version,
        "checkpoint_uri": checkpoint_uri,
        "metrics_uri": metrics_uri,
        "grid_uri": grid_uri,
        "metrics": summary,
    }
