"""Upload `.npz` datasets to train on."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile, status
from sqlalchemy.exc import IntegrityError

from api.deps import IdempotencyDep, SessionDep, SettingsDep, StorageDep, TenantDep
from api.quota import check_storage
from api.schemas import DatasetOut
from synthjobs.ledger import datasets, idempotency
from synthjobs.ledger.tables import Dataset
from synthjobs.rules.npzinfo import NpzError, NpzTooLarge, check_dataset_arrays, read_npz_headers

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,199}$"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    responses={
        413: {"description": "The upload, its decoded arrays, or the tenant's quota: past what is accepted."},
        429: {"description": "The tenant's storage quota is used up; delete jobs to make room."},
        422: {"description": "Not a usable .npz dataset; the detail says why."},
    },
)
def upload_dataset(
    request: Request,
    file: Annotated[UploadFile, File(description="An .npz with uint8 `images` and integer `labels`.")],
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    tenant: TenantDep,
    idem: IdempotencyDep,
    response: Response,
    name: Annotated[str | None, Form(pattern=NAME_PATTERN)] = None,
) -> Dataset:
    """Upload an .npz dataset (`images` uint8 N×H×W or N×H×W×C, `labels` int, optional `class_names`)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 65536:
        raise _too_large(settings.max_upload_bytes)
    size, digest = _measure(file, settings.max_upload_bytes)
    idem.request_sha256 = idempotency.digest(
        "upload", digest, name or ""
    )  # the file, not the multipart framing
    if (earlier := idem.replay(session, tenant)) is not None:
        response.status_code = status.HTTP_200_OK
        return datasets.get_dataset(session, earlier)
    check_storage(session, tenant, settings, size)
    try:
        images = check_dataset_arrays(read_npz_headers(file.file), settings.max_dataset_bytes)
    except NpzTooLarge as exc:  # a small archive that decodes to more than a worker may load
        raise HTTPException(413, [{"loc": ["body", "file"], "msg": str(exc), "type": "limit"}]) from exc
    except NpzError as exc:
        raise HTTPException(422, [{"loc": ["body", "file"], "msg": str(exc), "type": "value_error"}]) from exc
    dataset_id = datasets.new_dataset_id()
    file.file.seek(0)
    uri = storage.put_stream(datasets.dataset_key(dataset_id), file.file)
    label = name or _safe_name(file.filename) or dataset_id
    dataset = datasets.add_dataset(
        session,
        dataset_id=dataset_id,
        name=label,
        uri=uri,
        size=size,
        sha256=digest,
        images=images,
        tenant=tenant,
    )
    try:
        idem.remember(session, tenant, "dataset", dataset_id)
        session.commit()
    except IntegrityError:
        session.rollback()
        storage.delete(datasets.dataset_key(dataset_id))
        earlier = idem.replay(session, tenant)
        if earlier is None:
            raise
        response.status_code = status.HTTP_200_OK
        return datasets.get_dataset(session, earlier)
    return dataset


def _measure(file: UploadFile, limit: int) -> tuple[int, str]:
    """Size and sha256 of the upload, refusing it with 413 as soon as it passes `limit`."""
    digest, size = hashlib.sha256(), 0
    file.file.seek(0)
    while chunk := file.file.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        digest.update(chunk)
    file.file.seek(0)
    return size, digest.hexdigest()


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"upload larger than this deployment's limit of {limit} bytes")


def _safe_name(filename: str | None) -> str | None:
    if not filename:
        return None
    base = re.sub(r"[^A-Za-z0-9 ._-]", "_", filename.rsplit("/", 1)[-1])[:200].lstrip("._ -")
    return base or None


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, tenant: TenantDep) -> list[Dataset]:
    """List the tenant's uploaded datasets, newest first."""
    return list(datasets.list_datasets(session, tenant=tenant))


@router.get("/{dataset_id}", response_model=DatasetOut, responses={404: {"description": "No such dataset."}})
def get_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> Dataset:
    """Read one uploaded dataset."""
    return datasets.get_dataset(session, dataset_id, tenant=tenant)
