"""Submit, read and list jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import SenderDep, SessionDep, SettingsDep
from api.errors import field_error
from api.schemas import EventOut, JobOut, JobPage, SampleRequest, TrainRequest
from synthjobs import jobs
from synthjobs.errors import ModelNotFound
from synthjobs.models import Job, JobKind, JobState
from synthjobs.queue import enqueue_job
from synthjobs.registry import resolve_model
from synthjobs.settings import Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND = {404: {"description": "No job with that id."}}


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_train(body: TrainRequest, session: SessionDep, sender: SenderDep, settings: SettingsDep) -> Job:
    """Submit a training job."""
    check_train_limits(body, settings)
    config = {"dataset": body.dataset, "seed": body.seed, **body.hyperparameters.model_dump()}
    params = {"model_name": body.model_name or f"{body.dataset}-cvae", "config": config}
    return _submit(session, sender, settings, JobKind.TRAIN, params)


@router.post(
    "/sample",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={422: {"description": "Invalid request, unknown model or class, or a limit exceeded."}},
)
def submit_sample(body: SampleRequest, session: SessionDep, sender: SenderDep, settings: SettingsDep) -> Job:
    """Submit a bulk-sampling job from a trained model."""
    try:
        model = resolve_model(session, body.model)
    except ModelNotFound as exc:
        raise HTTPException(422, field_error(("model",), str(exc), "not_found")) from exc
    class_names = list(model.dataset.get("class_names", []))
    counts = resolve_counts(body.per_class, class_names)
    shard_size = body.shard_size or settings.default_shard_size
    check_sample_limits(sum(counts), shard_size, settings)
    params = {
        "model_id": model.id,
        "model": f"{model.name}:{model.version}",
        "counts": counts,
        "seed": body.seed,
        "temperature": body.temperature,
        "shard_size": shard_size,
        "format": body.format,
    }
    return _submit(session, sender, settings, JobKind.SAMPLE, params)


def _submit(
    session: SessionDep, sender: SenderDep, settings: Settings, kind: JobKind, params: dict[str, Any]
) -> Job:
    job = jobs.create_job(session, kind, params)
    session.commit()  # the row exists before any message can name it
    enqueue_job(sender, job.id, kind, settings)
    return job


def check_train_limits(body: TrainRequest, settings: Settings) -> None:
    """422 naming the first hyperparameter past this deployment's limit."""
    hp = body.hyperparameters
    limits = [
        ("epochs", hp.epochs, settings.max_epochs),
        ("batch_size", hp.batch_size, settings.max_batch_size),
        ("latent_dim", hp.latent_dim, settings.max_latent_dim),
        ("hidden_dim", hp.hidden_dim, settings.max_hidden_dim),
    ]
    for name, value, limit in limits:
        if value > limit:
            message = f"{name} {value} is above this deployment's limit of {limit}"
            raise HTTPException(422, field_error(("hyperparameters", name), message, "limit"))


def resolve_counts(per_class: int | dict[str, int], class_names: list[str]) -> list[int]:
    """Per-class counts in label order from a number for all or a map of class name (or id) to count."""
    if isinstance(per_class, int):
        if per_class < 1:
            raise HTTPException(422, field_error(("per_class",), "must be at least 1"))
        return [per_class] * len(class_names)
    counts = [0] * len(class_names)
    for key, count in per_class.items():
        index = _class_index(key, class_names)
        if count < 0:
            raise HTTPException(422, field_error(("per_class", key), "count must not be negative"))
        counts[index] = count
    if sum(counts) == 0:
        raise HTTPException(422, field_error(("per_class",), "asks for no samples at all"))
    return counts


def _class_index(key: str, class_names: list[str]) -> int:
    if key in class_names:
        return class_names.index(key)
    if key.isdigit() and int(key) < len(class_names):
        return int(key)
    known = ", ".join(class_names)
    raise HTTPException(422, field_error(("per_class", key), f"unknown class {key!r}; the model has {known}"))


def check_sample_limits(total: int, shard_size: int, settings: Settings) -> None:
    """422 naming the limit a sampling request exceeds."""
    if total > settings.max_samples_per_job:
        message = (
            f"{total} samples is above this deployment's limit of {settings.max_samples_per_job} per job"
        )
        raise HTTPException(422, field_error(("per_class",), message, "limit"))
    if shard_size > settings.max_shard_size:
        message = f"shard_size {shard_size} is above this deployment's limit of {settings.max_shard_size}"
        raise HTTPException(422, field_error(("shard_size",), message, "limit"))


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def get_job(job_id: str, session: SessionDep) -> Job:
    """Read a job's state, phase, progress, error and result."""
    return jobs.get_job(session, job_id)


@router.get("/{job_id}/events", response_model=list[EventOut], responses=NOT_FOUND)
def list_job_events(job_id: str, session: SessionDep) -> list[Any]:
    """List what happened to a job, oldest first."""
    return list(jobs.list_events(session, job_id))


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """List jobs, newest first, optionally by state and kind."""
    try:
        page, next_cursor = jobs.list_jobs(session, state=state, kind=kind, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise HTTPException(
            422, [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    return JobPage(items=[JobOut.model_validate(job) for job in page], next_cursor=next_cursor)
