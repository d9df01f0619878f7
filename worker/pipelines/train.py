"""A training job: job row → dataset + TrainConfig → training/ → artifacts in storage → model version.

The full training state is checkpointed to `jobs/{job_id}/train-state/` as training goes; a job run again
after its worker died resumes from there. Object keys come from the model id, itself derived from the job
id, so a retried job overwrites its own objects and registers the same model instead of a second one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from synthjobs import __version__
from synthjobs.errors import JobFailure
from synthjobs.ledger import schedules
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import model_id_for_job, register_model
from synthjobs.rules import model_budget
from synthjobs.rules.artifacts import hide_storage_root
from synthjobs.rules.promotion import Policy
from synthjobs.settings import Settings
from training.checkpoint import CheckpointError, load_train_state, save_checkpoint, save_train_state
from training.config import TrainConfig
from training.data import ImageDataset, fingerprint
from training.evaluate import Scores, per_class_table, preview_grid, score_model
from training.plots import loss_curve_png
from training.train import EpochMetrics, TrainResult, TrainState, train
from worker.context import JobContext
from worker.pipelines import promote
from worker.pipelines.classifier_cache import cached_evaluation_classifier
from worker.pipelines.datasets import describe, load_training_data

# Share of the progress bar given to the epochs; the rest is evaluation and upload.
TRAIN_SHARE = 0.9


def run(ctx: JobContext) -> dict[str, Any]:
    """Train (or resume), evaluate, store and register the model of a training job; return its result."""
    ctx.progress(0.0, "loading data", force=True)
    spec = ctx.params["dataset"]
    data = load_training_data(spec, ctx.settings, ctx.storage, tenant=ctx.tenant)
    try:
        cfg = TrainConfig.from_dict({**ctx.params["config"], "dataset": describe(spec)})
    except ValueError as exc:
        raise JobFailure(f"invalid training configuration: {exc}") from exc
    check_model_fits(cfg, data, ctx.settings)
    digest = fingerprint(data)
    ctx.event(
        "data",
        f"loaded {describe(spec)}: {len(data.train_y)} train, {len(data.val_y)} validation, "
        f"{len(data.test_y)} test images",
        {
            "fingerprint": digest,
            "image_shape": list(data.image_shape),
            "classes": len(data.class_names),
            "splits": data.split_record(),
        },
    )
    unchanged = _unchanged_data(ctx, digest)
    if unchanged is not None:
        return unchanged
    checkpoints = Checkpoints(ctx, cfg, data, digest)
    outcome = _train(ctx, cfg, data, checkpoints)
    if outcome.stopped and not ctx.lease_lost:
        checkpoints.flush()  # keep the last completed epoch, unless the job is someone else's now
    ctx.raise_if_stopped()
    ctx.progress(TRAIN_SHARE, "evaluating", force=True)
    classifier = cached_evaluation_classifier(
        ctx.storage, ctx.tenant, data, digest, seed=cfg.seed, device=ctx.device, event=ctx.event
    )
    scores = score_model(  # the model's one set of figures: stored below, compared by the promotion gate
        outcome.model,
        data,
        seed=cfg.seed,
        samples_per_class=ctx.settings.tstr_samples_per_class,
        classifier=classifier,
        device=ctx.device,
    )
    metrics = _metrics(ctx, outcome, scores, data)
    _report_privacy(ctx, scores)
    ctx.progress(0.95, "uploading", force=True)
    ctx.raise_if_stopped()
    result = _store(ctx, cfg, data, digest, outcome, classifier, metrics)
    policy = Policy.from_dict((ctx.params.get("schedule") or {}).get("policy"))
    decision = promote.compare(
        ctx, result["model_id"], result["model_name"], scores, classifier, data, digest, policy
    )
    follow_up = promote.apply(ctx, result["model_id"], decision)
    return {**result, "promotion": decision.to_dict(), "follow_up_sample_job_id": follow_up}


def _report_privacy(ctx: JobContext, scores: Scores) -> None:
    """An event with the privacy report's headline figures (the whole report is in the metrics)."""
    if scores.privacy is None:
        return
    if "skipped" in scores.privacy:
        ctx.event("privacy_report", f"no privacy report: {scores.privacy['skipped']}", dict(scores.privacy))
        return
    pixels, feats = scores.privacy["pixels"], scores.privacy["features"]
    ctx.event(
        "privacy_report",
        f"DCR share {pixels['dcr_share']:.3f} (pixels), {feats['dcr_share']:.3f} (features); "
        f"near copies {pixels['near_copies']:.3f} / {feats['near_copies']:.3f}",
        {"pixels": pixels, "features": feats, "extractor": scores.privacy["extractor"]},
    )


def check_model_fits(cfg: TrainConfig, data: ImageDataset, settings: Settings) -> None:
    """Fail the job, naming the figure, before building a model past this deployment's budget.

    The API checked with what it knew at submit; an image folder's shape and an upload's class count are
    only known here, and the limits may have changed since (InvalidRequest fails the job with its message).
    """
    model_budget.check_model_budget(
        data.image_shape,
        data.num_classes,
        cfg.to_dict(),
        max_parameters=settings.max_model_parameters,
        max_activation_bytes=settings.max_activation_bytes,
    )


def _unchanged_data(ctx: JobContext, digest: str) -> dict[str, Any] | None:
    """A scheduled run whose policy skips unchanged data, when the champion was trained on this very data."""
    schedule = ctx.params.get("schedule")
    if not schedule or not Policy.from_dict(schedule.get("policy")).skip_unchanged_data:
        return None
    champion = promote.champion_of(ctx, ctx.params["model_name"], exclude="")
    if champion is None or champion.dataset.get("fingerprint") != digest:
        return None
    reason = (
        f"data unchanged since the champion (v{champion.version}, fingerprint {digest[:12]}); not retrained"
    )
    with session_scope(ctx.database_url) as session:
        schedules.record_decision(session, schedule["run_id"], "skipped", {"reason": reason})
    ctx.event("skipped", reason)
    return {"skipped": True, "reason": reason, "model_id": None}


class Checkpoints:
    """The job's training-state checkpoints: written as training goes, read back on a re-run.

    Each checkpoint is a new object (`epoch-00012.pt`); only then is the `latest.json` pointer moved to it,
    so a crash mid-write never leaves a corrupt "latest". Older checkpoints are removed after the move.
    """

    def __init__(self, ctx: JobContext, cfg: TrainConfig, data: ImageDataset, fingerprint: str) -> None:
        self.ctx, self.cfg, self.data, self.fingerprint = ctx, cfg, data, fingerprint
        self.prefix = f"jobs/{ctx.job_id}/train-state"
        self._last_saved = time.monotonic()
        self._previous: str | None = None
        self._unsaved: TrainState | None = None

    def load_latest(self) -> TrainState | None:
        """The last checkpoint of an earlier attempt, or None (first attempt, or nothing usable)."""
        pointer_key = f"{self.prefix}/latest.json"
        if not self.ctx.storage.exists(pointer_key):
            return None
        pointer = json.loads(self.ctx.storage.get_bytes(pointer_key))
        if pointer.get("fingerprint") != self.fingerprint:
            self.ctx.event("resume", "the dataset changed since the last checkpoint; starting over")
            return None
        try:
            state, saved_cfg = load_train_state(self.ctx.storage.get_bytes(pointer["key"]))
        except CheckpointError as exc:
            self.ctx.event("resume", f"checkpoint {pointer['key']} unreadable ({exc}); starting over")
            return None
        if saved_cfg.to_dict() != self.cfg.to_dict():
            self.ctx.event("resume", "checkpoint belongs to other hyperparameters; starting over")
            return None
        self._previous = pointer["key"]
        return state

    def wanted(self, epoch: int) -> bool:
        """Whether `save` would store epoch `epoch`'s state now: `train` builds the snapshot only then.

        A skipped epoch is not lost to a stop: `train` then finishes the (short) epoch it is in and offers
        that, which `flush` stores.
        """
        final = epoch >= self.cfg.epochs
        return final or time.monotonic() - self._last_saved >= self.ctx.settings.checkpoint_min_interval

    def save(self, state: TrainState) -> None:
        """Store `state` if N epochs and the minimum interval have passed (always at the last epoch)."""
        final = state.epoch >= self.cfg.epochs
        if not final and time.monotonic() - self._last_saved < self.ctx.settings.checkpoint_min_interval:
            self._unsaved = state
            return
        self._write(state)

    def flush(self) -> None:
        """Store the last state offered but skipped by the minimum interval (on a stop)."""
        if self._unsaved is not None:
            self._write(self._unsaved)

    def _write(self, state: TrainState) -> None:
        self._unsaved = None
        if self.ctx.lease_lost:
            return  # the worker that took the job over writes its own checkpoints
        key = f"{self.prefix}/epoch-{state.epoch:05d}.pt"
        payload = save_train_state(
            state, self.cfg, image_shape=self.data.image_shape, class_names=self.data.class_names
        )
        self.ctx.storage.put_bytes(key, payload)
        pointer = {"key": key, "epoch": state.epoch, "bytes": len(payload), "fingerprint": self.fingerprint}
        self.ctx.storage.put_bytes(
            f"{self.prefix}/latest.json", json.dumps(pointer).encode(), "application/json"
        )
        if self._previous and self._previous != key:
            self.ctx.storage.delete(self._previous)
        self._previous = key
        self._last_saved = time.monotonic()


def _train(ctx: JobContext, cfg: TrainConfig, data: ImageDataset, checkpoints: Checkpoints) -> TrainResult:
    resume = checkpoints.load_latest()
    if resume is not None:
        ctx.event(
            "resumed",
            f"resuming from the checkpoint of epoch {resume.epoch}/{cfg.epochs} (attempt {ctx.attempt})",
            {"epoch": resume.epoch, "attempt": ctx.attempt},
        )

    def on_epoch(m: EpochMetrics) -> None:
        if ctx.lease_lost:
            return  # an epoch finished after a stop: the job is someone else's now, record nothing
        phase = f"epoch {m.epoch}/{m.epochs}"
        events: list[tuple[str, str, dict[str, Any] | None]] = [
            ("epoch", f"{phase}: {_epoch_figures(m)}", {**asdict(m), "device": str(ctx.device)})
        ]
        if m.epsilon is not None and cfg.privacy is not None:
            events.append(
                (
                    "privacy",
                    f"{phase}: DP-SGD epsilon spent {m.epsilon:.3f} of {cfg.privacy.epsilon} "
                    f"(delta {cfg.privacy.delta})",
                    {"epoch": m.epoch, "epsilon_spent": m.epsilon, **asdict(cfg.privacy)},
                )
            )
        ctx.progress(TRAIN_SHARE * m.epoch / m.epochs, phase, events=events)  # one transaction

    def on_batch(step: int, total_steps: int) -> None:
        epoch = min(cfg.epochs, 1 + (step - 1) * cfg.epochs // total_steps)
        ctx.progress(TRAIN_SHARE * step / total_steps, f"epoch {epoch}/{cfg.epochs}")

    return train(
        cfg,
        data,
        device=ctx.device,
        on_epoch=on_epoch,
        on_batch=on_batch,
        should_stop=ctx.should_stop,
        on_checkpoint=checkpoints.save,
        checkpoint_wanted=checkpoints.wanted,
        resume_from=resume,
    )


def _epoch_figures(m: EpochMetrics) -> str:
    """The epoch event's figures; an epoch that `eval_every` skipped has no held-out -ELBO."""
    heldout = "not evaluated" if m.heldout_neg_elbo is None else f"{m.heldout_neg_elbo:.2f}"
    return f"train loss {m.train_loss:.2f}, held-out -ELBO {heldout}"


def _metrics(ctx: JobContext, outcome: TrainResult, scores: Scores, data: ImageDataset) -> dict[str, Any]:
    """The model's metrics: its one set of `Scores` (what the promotion gate reads too) and training's own.

    `dp_epsilon_spent` is the accountant's epsilon after the last epoch of a DP-SGD run (None: not private).
    `splits` records the split sizes and recipe: the reported figures read test, the gate validation.
    """
    return {
        **scores.to_metrics(),
        "splits": data.split_record(),
        "dp_epsilon_spent": outcome.final.epsilon,
        "train_loss": outcome.final.train_loss,
        "epochs": outcome.final.epoch,
        "seconds_per_epoch": float(np.mean([m.seconds for m in outcome.history]))
        if outcome.history
        else None,
        "device": str(ctx.device),
        "history": [asdict(m) for m in outcome.history],
    }


def _store(
    ctx: JobContext,
    cfg: TrainConfig,
    data: ImageDataset,
    digest: str,
    outcome: TrainResult,
    classifier: torch.nn.Module,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    model_id = model_id_for_job(ctx.job_id)
    summary = {k: v for k, v in metrics.items() if k != "history"}
    dataset = {
        "name": cfg.dataset,
        "spec": ctx.params["dataset"],
        "fingerprint": digest,
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "train_size": len(data.train_y),
        "heldout_size": len(data.test_y),  # the test split (kept under its old name for old readers)
        "validation_size": len(data.val_y),
        "splits": data.split_record(),
    }
    started = time.monotonic()
    checkpoint = save_checkpoint(
        outcome.model,
        cfg,
        class_names=data.class_names,
        image_shape=data.image_shape,
        metrics=summary,
        classifier=classifier,
    )
    put = ctx.storage.put_bytes
    uris = {
        "checkpoint_uri": put(f"models/{model_id}/checkpoint.pt", checkpoint),
        "metrics_uri": put(f"models/{model_id}/metrics.json", _json(metrics), "application/json"),
        "loss_curve_uri": put(
            f"models/{model_id}/loss-curve.png", loss_curve_png(outcome.history), "image/png"
        ),
        "grid_uri": put(
            f"models/{model_id}/samples.png",
            preview_grid(outcome.model, seed=cfg.seed, device=ctx.device, class_names=data.class_names),
            "image/png",
        ),
    }
    card = {
        "model_id": model_id,
        "model_name": ctx.params["model_name"],
        "training_job_id": ctx.job_id,
        "hyperparameters": cfg.to_dict(),
        "dataset": dataset,
        "metrics": summary,
        "per_class": per_class_table(summary, data.class_names),  # accuracy and fidelity by class
        "synthjobs_version": __version__,
        "torch_version": torch.__version__,
        **hide_storage_root(uris, ctx.storage.url),  # the card is downloaded: keys, not server paths
    }
    uris["model_card_uri"] = put(f"models/{model_id}/model-card.json", _json(card), "application/json")
    ctx.event(
        "uploaded",
        f"model artifacts stored in {time.monotonic() - started:.2f}s",
        {"checkpoint_uri": uris["checkpoint_uri"], "bytes": len(checkpoint)},
    )
    with session_scope(ctx.database_url) as session:
        model = register_model(
            session,
            model_id=model_id,
            name=ctx.params["model_name"],
            training_job_id=ctx.job_id,
            checkpoint_uri=uris["checkpoint_uri"],
            hyperparameters=cfg.to_dict(),
            metrics=summary,
            dataset=dataset,
            tenant=ctx.tenant,
        )
        name, version = model.name, model.version
    return {"model_id": model_id, "model_name": name, "model_version": version, **uris, "metrics": summary}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()
