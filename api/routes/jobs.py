"""Submit, read, cancel and list a tenant's jobs."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.exc import IntegrityError

from api.deps import IdempotencyDep, QuotaDep, SenderDep, SessionDep, SettingsDep, StorageDep, TenantDep
from api.errors import field_error
from api.quota import check_storage
from api.schemas import DeletionOut, EventOut, JobOut, JobPage, SampleRequest, ShardOut, TrainRequest
from synthjobs.broker.queue import enqueue_job, enqueue_shards
from synthjobs.errors import DatasetNotFound, InvalidRequest, ModelNotFound
from synthjobs.ledger import datasets, deletion, jobs, shards
from synthjobs.ledger.registry import resolve_model
from synthjobs.ledger.shards import create_sampling_job
from synthjobs.ledger.tables import Job, JobKind, JobState, utcnow
from synthjobs.rules import model_budget
from synthjobs.rules.data_sources import DataSourceRefused, match_source
from synthjobs.rules.sampling import sample_params
from synthjobs.settings import Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No job with that id."}}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "The job an earlier request with this Idempotency-Key created."},
    409: {"description": "The Idempotency-Key was used with a different request."},
    422: {"description": "Invalid request, unknown model, dataset or class, or a limit exceeded."},
    413: {"description": "The job's planned output alone is larger than the tenant's storage quota."},
    429: {
        "description": "Too many jobs in flight or submitted this minute (see Retry-After), "
        "or the tenant's storage quota is used up (delete jobs to make room)."
    },
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
    check_storage(session, tenant, settings)
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
    check_storage(session, tenant, settings, int(params["planned_bytes"]))
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
    check_model_limits(body, submit_image_shape(spec, session, tenant), settings)
    return {
        "model_name": body.model_name or default_model_name(spec),
        "dataset": spec,
        "config": {"seed": body.seed, **body.hyperparameters.model_dump()},
        "max_runtime_seconds": body.max_runtime_seconds or settings.max_runtime_seconds,
    }


def dataset_spec(body: TrainRequest, session: SessionDep, settings: Settings, tenant: str) -> dict[str, Any]:
    """The dataset as a normalised spec; 422 for data outside the tenant's sources or an unknown id."""
    if isinstance(body.dataset, str):
        return {"kind": "builtin", "name": body.dataset}
    spec = body.dataset.model_dump()
    if spec["kind"] == "torchvision":
        if spec["download"] and not settings.allow_dataset_downloads:
            message = "this deployment does not download datasets; put the files under root and omit download"
            raise HTTPException(422, field_error(("dataset", "download"), message, "not_allowed"))
        _check_data_location(spec["root"], "root", settings, tenant)
    if spec["kind"] == "image_folder":
        _check_data_location(spec["url"], "url", settings, tenant)
    if spec["kind"] == "uploaded":
        try:
            spec["uri"] = datasets.get_dataset(session, spec["id"], tenant=tenant).uri
        except DatasetNotFound as exc:
            raise HTTPException(422, field_error(("dataset", "id"), str(exc), "not_found")) from exc
    return spec


def _check_data_location(value: str, field: str, settings: Settings, tenant: str) -> None:
    """422 on `dataset.<field>` unless `value` is in one of the tenant's data sources (workers re-check)."""
    sources = settings.resolved_data_sources(tenant)
    try:
        source, _ = match_source(
            value, sources, settings.resolved_storage_url(), resolve_local=os.path.realpath
        )
    except DataSourceRefused as exc:
        raise HTTPException(422, field_error(("dataset", field), str(exc), "not_allowed")) from exc
    if source.location.scheme == "s3" and not (
        source.has_credentials or settings.data_sources_instance_credentials
    ):
        message = f"{value}: its data source has no credentials configured on this deployment"
        raise HTTPException(422, field_error(("dataset", field), message, "not_allowed"))


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


def submit_image_shape(
    spec: dict[str, Any], session: SessionDep, tenant: str
) -> tuple[tuple[int, int, int], int] | None:
    """(C, H, W) and class count of the dataset as far as known at submit; None for an image folder.

    An uploaded dataset's classes are unknown until its labels are read, so its figure uses the fewest a
    dataset can have (the worker checks again with the exact one).
    """
    if spec["kind"] in ("builtin", "torchvision"):
        return model_budget.KNOWN_DATASETS.get(spec["name"])
    if spec["kind"] == "uploaded":
        shape = datasets.get_dataset(session, spec["id"], tenant=tenant).image_shape
        try:
            chw = (int(shape["channels"]), int(shape["height"]), int(shape["width"]))
        except (KeyError, TypeError, ValueError):
            return None
        return chw, model_budget.MIN_CLASSES
    return None


def check_model_limits(
    body: TrainRequest, known: tuple[tuple[int, int, int], int] | None, settings: Settings
) -> None:
    """422 with the figure and the limit when the model or its activations are past this deployment's."""
    if known is None:
        return
    image_shape, num_classes = known
    try:
        model_budget.check_model_budget(
            image_shape,
            num_classes,
            body.hyperparameters.model_dump(),
            max_parameters=settings.max_model_parameters,
            max_activation_bytes=settings.max_activation_bytes,
        )
    except InvalidRequest as exc:
        raise HTTPException(422, field_error(exc.loc, str(exc), exc.kind)) from exc


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
    if job.kind == JobKind.SAMPLE.value:
        shards.record_left_behind(session, job_id)  # what it wrote stays until DELETE; listed in its result
    session.commit()
    return job_out(jobs.get_job(session, job_id))


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
    include_deleted: bool = False,
) -> JobPage:
    """List the tenant's jobs, newest first, optionally by state and kind (deleted ones on request)."""
    try:
        page, next_cursor = jobs.list_jobs(
            session,
            state=state,
            kind=kind,
            limit=limit,
            cursor=cursor,
            tenant=tenant,
            include_deleted=include_deleted,
        )
    except ValueError as exc:
        raise HTTPException(
            422, [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    return JobPage(items=[job_out(job) for job in page], next_cursor=next_cursor)


@router.delete(
    "/{job_id}",
    response_model=DeletionOut,
    responses={
        **NOT_FOUND,
        202: {"model": DeletionOut, "description": "Cancelled; outputs go once its worker has stopped."},
        409: {"description": "A model version this job trained is registered; its checkpoint stays."},
    },
)
def delete_job(
    job_id: str,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    tenant: TenantDep,
) -> DeletionOut:
    """Delete a job's outputs, cancelling it first if it runs; its row stays, marked deleted."""
    deletion.begin_deletion(session, job_id, tenant=tenant)
    session.commit()  # durable before any object goes: the reconciler finishes a deletion cut short
    removed = deletion.finish_deletion(session, storage, job_id, settings.lease_seconds)
    session.commit()
    job = jobs.get_job(session, job_id)
    done = job.deleted_at is not None
    if not done:
        response.status_code = status.HTTP_202_ACCEPTED
    objects = removed.objects if removed is not None else []
    return DeletionOut(
        **job_out(job).model_dump(),
        deletion="done" if done else "pending",
        removed_objects=len(objects),
        removed_bytes=sum(size for _, size in objects),
    )
