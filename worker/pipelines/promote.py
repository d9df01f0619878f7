"""After training: compare the new model with its name's champion and move the alias if it is better.

Both models are measured the same way on the same (current) data, by `training.evaluate.score_model`: the
challenger's figures are the ones its training job just stored in its metrics. The champion's are

- read from its stored metrics when it was scored alike: trained on data of the same fingerprint and scored
  with the same `evaluation` record (recipe, samples per class, seed, temperature). Its figures then are
  exactly what re-measuring would give (the evaluation classifier and every stream come from that seed and
  data), without generating and training again;
- otherwise (other data, another seed, an older recipe) re-measured now with the challenger's parameters
  and its evaluation classifier, so both see the same classifier and the same latents.

A promotion of a scheduled run submits its follow-up sampling job.
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
from training.evaluate import Scores, figures_of, score_model
from worker.context import JobContext

log = logging.getLogger(__name__)


def scored_alike(champion: Model, challenger: Scores, fingerprint: str) -> bool:
    """Whether the champion's stored figures were measured as the challenger's were, on the same data."""
    return (
        champion.dataset.get("fingerprint") == fingerprint
        and champion.metrics.get("evaluation") == challenger.evaluation()
    )


def champion_figures(
    ctx: JobContext,
    champion: Model,
    challenger: Scores,
    classifier: torch.nn.Module,
    data: ImageDataset,
    fingerprint: str,
) -> dict[str, float] | None:
    """The champion's gate figures, measured like the challenger's; None when its data has another shape."""
    if scored_alike(champion, challenger, fingerprint):
        return figures_of(champion.metrics)
    loaded = load_checkpoint(
        ctx.storage.get_bytes(ctx.storage.key_of(champion.checkpoint_uri)), device=ctx.device
    )
    if tuple(loaded.image_shape) != tuple(data.image_shape) or len(loaded.class_names) != data.num_classes:
        return None
    scores = score_model(
        loaded.model,
        data,
        seed=challenger.seed,
        samples_per_class=challenger.samples_per_class,
        temperature=challenger.temperature,
        classifier=classifier,
        device=ctx.device,
    )
    return scores.figures()


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
    challenger: Scores,
    classifier: torch.nn.Module,
    data: ImageDataset,
    fingerprint: str,
    policy: Policy,
) -> Decision:
    """Decide on the challenger's stored figures against the champion's, measured alike (module doc)."""
    champion = champion_of(ctx, name, exclude=model_id)
    if champion is None:
        return decide(challenger.figures(), None, policy)
    figures = champion_figures(ctx, champion, challenger, classifier, data, fingerprint)
    if figures is None:
        return Decision(False, f"kept champion: v{champion.version} was trained on data of another shape")
    return decide(challenger.figures(), figures, policy)


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
    found = schedules.get_schedule(session, schedule["id"])
    spec = found.sample
    if not spec:
        return None
    try:
        params = sample_params({**spec, "priority": found.priority}, model, ctx.settings)
    except InvalidRequest as exc:
        ctx.event("follow-up", f"follow-up sampling not submitted: {exc}")
        return None
    job, shard_total = create_sampling_job(session, params, tenant=ctx.tenant)
    job.notify, job.notify_secret = found.notify, found.notify_secret  # the schedule's runs all notify
    return job.id, shard_total
