"""Download a job's outputs without storage credentials: presigned S3 URLs, or links the API signs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from api.deps import SessionDep, SettingsDep, StorageDep, TenantDep, tenant_for_request
from synthjobs.errors import JobNotFound
from synthjobs.ledger import jobs
from synthjobs.rules import artifacts
from synthjobs.storage.local import LocalStorage

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


class ArtifactOut(BaseModel):
    """One output object and a URL that downloads it without credentials until `expires_in` runs out."""

    name: str
    uri: str
    url: str
    expires_in: int


def _signing_key(request: Request) -> bytes | None:
    """The key `create_app` resolved once (generating the embedded default's on first start)."""
    key: bytes | None = request.app.state.signing_key
    return key


@router.get(
    "/{job_id}/artifacts", response_model=list[ArtifactOut], responses={404: {"description": "No job."}}
)
def list_artifacts(
    job_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    tenant: TenantDep,
) -> list[ArtifactOut]:
    """List a job's outputs with short-lived download URLs (issued only to the job's tenant)."""
    job = jobs.get_job(session, job_id, tenant=tenant)
    key = _signing_key(request)
    out = []
    for name, uri in artifacts.artifact_uris(job).items():
        url = storage.presigned_url(storage.key_of(uri), settings.presign_seconds)
        if url is None:
            url = str(request.url_for("download_artifact", job_id=job_id, name=name))
            if key is not None:
                url += "?" + artifacts.signed_query(key, job_id, name, settings.presign_seconds)
        shown = artifacts.hide_storage_root(uri, storage.url)
        out.append(ArtifactOut(name=name, uri=shown, url=url, expires_in=settings.presign_seconds))
    return out


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    response_model=None,
    responses={200: {"content": {"application/octet-stream": {}}}, 401: {}, 403: {}, 404: {}, 307: {}},
)
def download_artifact(
    job_id: str,
    name: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    expires: Annotated[int | None, Query()] = None,
    signature: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> FileResponse | RedirectResponse:
    """Download one output: with a valid signed link, or with the job's tenant's bearer token."""
    if expires is not None and signature is not None:
        key = _signing_key(request)
        if key is None:
            raise HTTPException(403, "signed download links are not enabled here; send a bearer token")
        if not artifacts.signature_valid(
            key, job_id, name, expires, signature, max_seconds=settings.presign_seconds
        ):
            raise HTTPException(403, "this download link is invalid or has expired")
        try:
            job = jobs.get_job(session, job_id)
        except JobNotFound as exc:
            raise HTTPException(404, "no such artifact") from exc
    else:
        job = jobs.get_job(session, job_id, tenant=tenant_for_request(request, session, settings))
    uri = artifacts.artifact_uris(job).get(name)
    if uri is None:
        raise HTTPException(404, f"job {job_id} has no artifact {name!r}")
    object_key = storage.key_of(uri)
    inner = getattr(storage, "inner", storage)
    if isinstance(inner, LocalStorage):
        return FileResponse(inner.path_of(object_key), filename=name, media_type="application/octet-stream")
    url = storage.presigned_url(object_key, settings.presign_seconds)
    if url is None:
        raise HTTPException(404, "no such artifact")
    return RedirectResponse(url, status_code=307)
