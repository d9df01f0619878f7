"""After training: compare the new model with its name's champion and move the alias if it is better.

Both models are measured the same way on the same (current) data: conditional accuracy scored by one
evaluation classifier, TSTR with one fixed classifier recipe on a fixed number of generated samples per class,
and the held-out ELBO for context. A promotion of a scheduled run submits its follow-up sampling job.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from synthjobs.broker.queue import enqueue_shards
from synthjobs.errors import InvalidRequest
from synthjobs.ledger import registry, schedules
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.shards import create_sampling_job
from synthjobs.ledger.tables import Model
from synthjobs.rules.promotion import CHAMPION, Decision, Policy, decide
from synthjobs.rules.sampling import sample_params
from training.checkpoint import load_checkpoint
from training.data import ImageDataset
from training.evaluate import as_flat_pixels, conditional_accuracy
from training.evaluate import tstr as tstr_accuracy
from training.model import CVAE
from training.sample import generate, shard_generator
from training.train import heldout_neg_elbo
from worker.context import JobContext

log = logging.getLogger(__name__)
EVAL_SEED = 20_240_601  # fixed: both models see the same latents' seed and the same classifier seed


def figures(
    model: CVAE, classifier: torch.nn.Module, data: ImageDataset, per_class: int, device: torch.device
) -> dict[str, float]:
    """The gate's figures for one model on `data`, by a fixed recipe."""
    labels = torch.arange(data.num_classes).repeat_interleave(per_class)
    images = generate(model, labels, generator=shard_generator(EVAL_SEED, 0), device=device)
    return {
        "tstr": round(tstr_accuracy(images, labels, data, seed=0, device=device), 4),
        "conditional_accuracy": round(
            conditional_accuracy(classifier, as_flat_pixels(images, data.image_shape), labels)["overall"], 4
        ),
        "heldout_neg_elbo": round(heldout_neg_elbo(model, data, device=device), 4),
    }


def champion_of(ctx: JobContext, name: str, exclude: str) -> Model | None:
    with session_scope(ctx.database_url) as session:
        try:
            model = registry.resolve_model(session, f"{name}@{CHAMPION}", tenant=ctx.tenant)
        except registry.ModelNotFound:
            return None
        session.expunge(model)
        return model if model.id != exclude else None


def compare(
    ctx: JobContext,
    model_id: str,
    name: str,
    challenger: dict[str, float],
    classifier: torch.nn.Module,
    data: ImageDataset,
    policy: Policy,
) -> Decision:
    """Measure the champion on the same data and decide."""
    champion = champion_of(ctx, name, exclude=model_id)
    if champion is None:
        return decide(challenger, None, policy)
    loaded = load_checkpoint(
        ctx.storage.get_bytes(ctx.storage.key_of(champion.checkpoint_uri)), device=ctx.device
    )
    if tuple(loaded.image_shape) != tuple(data.image_shape) or len(loaded.class_names) != data.num_classes:
        return Decision(False, f"kept champion: v{champion.version} was trained on data of another shape")
    per_class = ctx.settings.tstr_samples_per_class
    return decide(challenger, figures(loaded.model, classifier, data, per_class, ctx.device), policy)


def apply(ctx: JobContext, model_id: str, decision: Decision) -> str | None:
    """Record the decision (model metrics, job event, schedule run), move the alias, submit a follow-up."""
    schedule = ctx.params.get("schedule")
    with session_scope(ctx.database_url) as session:
        model = registry.get_model(session, model_id)
        model.metrics = {**model.metrics, "promotion": decision.to_dict()}
        if decision.promote:
            registry.set_alias(
                session,
                model.name,
                CHAMPION,
                model,
                actor=f"promotion (job {ctx.job_id})",
                reason=decision.reason,
            )
        sample_job = _follow_up(ctx, session, model, schedule) if decision.promote and schedule else None
        if schedule:
            outcome = "promoted" if decision.promote else "kept"
            schedules.record_decision(
                session,
                schedule["run_id"],
                outcome,
                decision.to_dict(),
                sample_job[0] if sample_job else None,
            )
    ctx.event("promotion", decision.reason, decision.to_dict())
    if sample_job:
        from worker.celery_app import app

        enqueue_shards(app, sample_job[0], list(range(sample_job[1])), ctx.settings)
        return sample_job[0]
    return None


def _follow_up(
    ctx: JobContext, session: Any, model: Model, schedule: dict[str, Any]
) -> tuple[str, int] | None:
    spec = schedules.get_schedule(session, schedule["id"]).sample
    if not spec:
        return None
    try:
        params = sample_params(spec, model, ctx.settings)
    except InvalidRequest as exc:
        ctx.event("follow-up", f"follow-up sampling not submitted: {exc}")
        return None
    job, shard_total = create_sampling_job(session, params, tenant=ctx.tenant)
    return job.id, shard_total
