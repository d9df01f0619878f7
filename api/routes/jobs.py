"""Submit, read, cancel and list a tenant's jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, create_model

from api.deps import SessionDep, SettingsDep, StorageDep, TenantDep
from api.errors import field_error
from api.schemas import (
    NOTIFY_HELP,
    DeletionOut,
    EventOut,
    JobOut,
    JobPage,
    NotifyIn,
    SampleRequest,
    ShardOut,
    TrainRequest,
    WaitOut,
)
from api.submit import SubmissionDep, job_out, submit
from synthjobs.errors import InvalidRequest, ModelNotFound
from synthjobs.ledger import datasets, deletion, jobs, shards, waiting
from synthjobs.ledger.registry import resolve_model
from synthjobs.ledger.tables import JobState
from synthjobs.rules import kinds, training_request
from synthjobs.rules.sampling import sample_params
from synthjobs.rules.training_request import Upload
from synthjobs.settings import Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The submit routes are `async` and run the whole submit path (SQL, publish) in one worker thread: a sync
# route costs that hop too, plus another to validate its response; their dependencies are async as well.

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
async def submit_train(body: TrainRequest, at: SubmissionDep) -> JobOut:
    """Submit a training job."""

    def build() -> dict[str, Any]:
        return train_params(body, at.session, at.settings, at.tenant)

    return await run_in_threadpool(submit, kinds.TRAIN.name, build, at, body.notify)


@router.post(
    "/sample", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=SUBMIT_RESPONSES
)
async def submit_sample(body: SampleRequest, at: SubmissionDep) -> JobOut:
    """Submit a bulk-sampling job from a trained model (by id, name:version or name@alias)."""

    def build() -> dict[str, Any]:
        try:
            model = resolve_model(at.session, body.model, tenant=at.tenant)
        except ModelNotFound as exc:
            raise HTTPException(422, field_error(("model",), str(exc), "not_found")) from exc
        return sample_params(body.model_dump(exclude={"notify"}), model, at.settings)

    return await run_in_threadpool(submit, kinds.SAMPLE.name, build, at, body.notify)


def kind_router() -> APIRouter:
    """`POST /v1/jobs/{kind}` for every kind registered with a request schema of its own (plugins).

    Built when the app is, after the plugins are loaded; each route validates the kind's own schema (it
    appears in the OpenAPI document) and takes the same submit path as training.
    """
    extra = APIRouter(prefix="/v1/jobs", tags=["jobs"])
    for spec in kinds.generic_kinds():
        extra.add_api_route(
            f"/{spec.name}",
            _generic_submit(spec),
            methods=["POST"],
            status_code=status.HTTP_202_ACCEPTED,
            response_model=JobOut,
            responses=SUBMIT_RESPONSES,
            summary=spec.description or f"Submit a {spec.name} job.",
            name=f"submit_{spec.name}",
        )
    return extra


def _generic_submit(spec: kinds.KindSpec) -> Callable[..., Awaitable[JobOut]]:
    build = spec.build
    assert build is not None  # generic_kinds() has both a request schema and a builder

    async def submit_kind(body: BaseModel, at: SubmissionDep) -> JobOut:
        notify: NotifyIn | None = getattr(body, "notify", None)

        def build_kind() -> dict[str, Any]:
            return build(body.model_dump(exclude={"notify"}), at.settings)

        return await run_in_threadpool(submit, spec.name, build_kind, at, notify)

    # The kind's own schema, not BaseModel, with the `notify` every kind takes (unless it has its own).
    request = spec.request
    assert request is not None
    if "notify" not in request.model_fields:
        request = create_model(
            request.__name__,
            __base__=request,
            notify=(NotifyIn | None, Field(default=None, description=NOTIFY_HELP)),
        )
    submit_kind.__annotations__["body"] = request
    return submit_kind


def train_params(body: TrainRequest, session: SessionDep, settings: Settings, tenant: str) -> dict[str, Any]:
    """A training job's params from its request (`rules.training_request`); 422 past a limit or for data
    the workers may not read. Schedules store the same params."""

    def find_upload(dataset_id: str) -> Upload:
        found = datasets.get_dataset(session, dataset_id, tenant=tenant)
        return Upload(found.uri, found.image_shape)

    try:
        spec = body.model_dump(exclude={"notify"})
        return training_request.train_params(spec, settings, tenant, find_upload=find_upload)
    except InvalidRequest as exc:
        raise HTTPException(422, field_error(exc.loc, str(exc), exc.kind)) from exc


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def get_job(job_id: str, session: SessionDep, settings: SettingsDep, tenant: TenantDep) -> JobOut:
    """Read a job's state, progress, ETA, why it waits, error and result (and a sampling job's shards)."""
    row = jobs.get_job(session, job_id, tenant=tenant)
    job = job_out(row)
    wait, queued_eta = waiting.job_wait(session, row, settings.shard_window)
    if wait is not None:
        job.wait = WaitOut(reason=wait.reason, position=wait.position)
    if queued_eta is not None:
        job.eta_seconds = queued_eta
    if kinds.is_sharded(job.kind):
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
    if kinds.is_sharded(job.kind):
        shards.record_left_behind(session, job_id)  # what it wrote stays until DELETE; listed in its result
    session.commit()
    return job_out(jobs.get_job(session, job_id))


@router.get("/{job_id}/events", response_model=list[EventOut], responses=NOT_FOUND)
def list_job_events(job_id: str, session: SessionDep, tenant: TenantDep) -> list[Any]:
    """List what happened to a job, oldest first."""
    return list(jobs.list_events(session, job_id, tenant=tenant))


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    state: JobState | None = None,
    kind: Annotated[
        str | None, Query(max_length=16, description="A registered job kind: train, sample or a plugin's.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    include_deleted: bool = False,
) -> JobPage:
    """List the tenant's jobs, newest first, optionally by state and kind (deleted ones on request)."""
    if kind is not None and kind not in kinds.kind_names():
        message = f"unknown job kind {kind!r}; one of {', '.join(kinds.kind_names())}"
        raise HTTPException(422, [{"loc": ["query", "kind"], "msg": message, "type": "enum"}])
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
