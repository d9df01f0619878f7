"""Submit, read, cancel and list a tenant's jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.exc import IntegrityError

from api.deps import IdempotencyDep, QuotaDep, SenderDep, SessionDep, SettingsDep, TenantDep
from api.errors import field_error
from api.schemas import EventOut, JobOut, JobPage, SampleRequest, ShardOut, TrainRequest
from synthjobs import datasets, jobs, shards
from synthjobs.errors import DatasetNotFound, InvalidRequest, ModelNotFound
from synthjobs.models import Job, JobKind, JobState, utcnow
from synthjobs.queue import enqueue_job, enqueue_shards
from synthjobs.registry import resolve_model
from synthjobs.sampling import create_sampling_job, sample_params
from synthjobs.settings import Settings
from synthjobs.storage import local_path_of

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No job with that id."}}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "The job an earlier request with this Idempotency-Key created."},
    409: {"description": "The Idempotency-Key was used with a different request."},
    422: {"description": "Invalid request, unknown model, dataset or class, or a limit exceeded."},
    429: {"description": "Too many jobs in flight or submitted this minute; see Retry-After."},
}


@router.post(
    "/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=SUBMIT_RESPONSES
)
def submit_train(
    body: TrainRequest,
    response: Response,
    session: SessionDep,
    sender: SenderDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idem: IdempotencyDep,
    quota: QuotaDep,
) -> JobOut:
    """Submit a training job."""
    if (earlier := _replayed(session, idem, tenant, response)) is not None:
        return earlier
    quota.check(session, tenant)
    params = train_params(body, session, settings, tenant)
    job = jobs.create_job(session, JobKind.TRAIN, params, tenant=tenant)
    if (earlier := _commit(session, idem, tenant, job.id, response)) is not None:
        return earlier
    quota.record(tenant)
    enqueue_job(sender, job.id, JobKind.TRAIN, settings)
    return job_out(job)


@router.post(
    "/sample", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=SUBMIT_RESPONSES
)
def submit_sample(
    body: SampleRequest,
    response: Response,
    session: SessionDep,
    sender: SenderDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idem: IdempotencyDep,
    quota: QuotaDep,
) -> JobOut:
    """Submit a bulk-sampling job from a trained model (by id, name:version or name@alias)."""
    if (earlier := _replayed(session, idem, tenant, response)) is not None:
        return earlier
    quota.check(session, tenant)
    try:
        model = resolve_model(session, body.model, tenant=tenant)
    except ModelNotFound as exc:
        raise HTTPException(422, field_error(("model",), str(exc), "not_found")) from exc
    try:
        params = sample_params(body.model_dump(), model, settings)
    except InvalidRequest as exc:
        raise HTTPException(422, field_error(exc.loc, str(exc), exc.kind)) from exc
    job, shard_total = create_sampling_job(session, params, tenant=tenant)
    if (earlier := _commit(session, idem, tenant, job.id, response)) is not None:
        return earlier
    quota.record(tenant)
    enqueue_shards(sender, job.id, list(range(shard_total)), settings)
    return job_out(job)


def _replayed(session: SessionDep, idem: IdempotencyDep, tenant: str, response: Response) -> JobOut | None:
    """The job an earlier request with this Idempotency-Key created (answered 200), or None."""
    earlier = idem.replay(session, tenant)
    if earlier is None:
        return None
    response.status_code = status.HTTP_200_OK
    return job_out(jobs.get_job(session, earlier))


def _commit(
    session: SessionDep, idem: IdempotencyDep, tenant: str, job_id: str, response: Response
) -> JobOut | None:
    """Commit the new job with its idempotency record (the row exists before any message names it).

    Returns the twin request's job when a concurrent request with the same key committed first.
    """
    try:
        idem.remember(session, tenant, "job", job_id)
        session.commit()
        return None
    except IntegrityError:
        session.rollback()
        earlier = _replayed(session, idem, tenant, response)
        if earlier is None:
            raise
        return earlier


def train_params(body: TrainRequest, session: SessionDep, settings: Settings, tenant: str) -> dict[str, Any]:
    """A training job's params from its request; 422 past a limit or for data the workers may not read."""
    check_train_limits(body, settings)
    spec = dataset_spec(body, session, settings, tenant)
    return {
        "model_name": body.model_name or default_model_name(spec),
        "dataset": spec,
        "config": {"seed": body.seed, **body.hyperparameters.model_dump()},
        "max_runtime_seconds": body.max_runtime_seconds or settings.max_runtime_seconds,
    }


def dataset_spec(body: TrainRequest, session: SessionDep, settings: Settings, tenant: str) -> dict[str, Any]:
    """The request's dataset as a normalised spec; 422 for a path outside the data roots or an unknown id."""
    if isinstance(body.dataset, str):
        return {"kind": "builtin", "name": body.dataset}
    spec = body.dataset.model_dump()
    url = spec.get("url", "")
    local = spec.get("root") or (url if url.startswith("file://") else None)
    if local is not None:
        resolved = local_path_of(local) if local.startswith("file://") else Path(local).resolve()
        roots = settings.resolved_data_roots()
        if not any(resolved.is_relative_to(root) for root in roots):
            field = "root" if "root" in spec else "url"
            message = f"{local} is not under a data root ({', '.join(map(str, roots))})"
            raise HTTPException(422, field_error(("dataset", field), message))
    if spec["kind"] == "uploaded":
        try:
            spec["uri"] = datasets.get_dataset(session, spec["id"], tenant=tenant).uri
        except DatasetNotFound as exc:
            raise HTTPException(422, field_error(("dataset", "id"), str(exc), "not_found")) from exc
    return spec


def default_model_name(spec: dict[str, Any]) -> str:
    """`<dataset>-cvae`, e.g. digits-cvae, mnist-cvae; `cvae` for folders and uploads."""
    if spec["kind"] in ("builtin", "torchvision"):
        return f"{spec['name'].lower()}-cvae"
    return f"{spec['kind'].replace('_', '-')}-cvae"


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
    runtime, most = body.max_runtime_seconds, settings.max_runtime_seconds
    if runtime is not None and runtime > most:
        message = f"max_runtime_seconds {runtime} is above this deployment's limit of {most}"
        raise HTTPException(422, field_error(("max_runtime_seconds",), message, "limit"))


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def get_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobOut:
    """Read a job's state, phase, progress, ETA, error and result (and a sampling job's shards)."""
    job = job_out(jobs.get_job(session, job_id, tenant=tenant))
    if job.kind == JobKind.SAMPLE.value:
        job.shards = [ShardOut.model_validate(s) for s in shards.list_shards(session, job_id)]
    return job


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={**NOT_FOUND, 409: {"description": "The job has already finished."}},
)
def cancel_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobOut:
    """Cancel a queued or running job; a running one stops at its next batch boundary."""
    job = jobs.cancel_job(session, job_id, tenant=tenant)
    session.commit()
    return job_out(job)


def job_out(job: Job) -> JobOut:
    """The API's view of a job, with an ETA from its pace so far while it runs."""
    out = JobOut.model_validate(job)
    if job.state == JobState.RUNNING.value and job.started_at is not None and 0.02 < job.progress < 1:
        elapsed = (utcnow() - job.started_at).total_seconds()
        out.eta_seconds = round(elapsed * (1 - job.progress) / job.progress, 1)
    return out


@router.get("/{job_id}/events", response_model=list[EventOut], responses=NOT_FOUND)
def list_job_events(job_id: str, session: SessionDep, tenant: TenantDep) -> list[Any]:
    """List what happened to a job, oldest first."""
    return list(jobs.list_events(session, job_id, tenant=tenant))


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """List the tenant's jobs, newest first, optionally by state and kind."""
    try:
        page, next_cursor = jobs.list_jobs(
            session, state=state, kind=kind, limit=limit, cursor=cursor, tenant=tenant
        )
    except ValueError as exc:
        raise HTTPException(
            422, [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    return JobPage(items=[job_out(job) for job in page], next_cursor=next_cursor)
