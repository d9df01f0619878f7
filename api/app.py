"""The FastAPI application: `uvicorn api.app:create_app --factory` (or `synthjobs api`)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import bearer_scheme, session_factory
from api.errors import install_error_handlers
from api.limits import BodyLimits
from api.quota import QuotaGuard
from api.routes import artifacts, datasets, health, jobs, metrics, models, schedules, webhooks
from api.schemas import STORAGE_URL
from api.text import refuse_unstorable_params
from api.ui import install_ui
from synthjobs import __version__
from synthjobs.broker.queue import make_sender
from synthjobs.logs import configure_logging, secrets_of
from synthjobs.plugins import load_plugins
from synthjobs.rules.artifacts import check_signing_key, signing_key
from synthjobs.settings import Settings, get_settings
from synthjobs.storage import open_storage
from synthjobs.storage.retry import RetryingStorage

DESCRIPTION = """
Train class-conditional VAEs and bulk-generate labelled synthetic data as queued jobs.

Submit a job (`POST /v1/jobs/train`, `POST /v1/jobs/sample`): the answer is `202` with the job id, and
`GET /v1/jobs/{id}` follows it through `QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED`.
"""


# Answers any operation can give before its own code runs.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be parsed: not UTF-8 JSON, or a malformed multipart upload."},
    413: {"description": "The body is larger than this deployment accepts."},
    415: {"description": "The body's content type is not the one this operation takes."},
}
# Only operations that take the bearer token (those with `security`) can answer it: not /healthz, /metrics.
UNAUTHORIZED = {"description": "A valid 'Authorization: Bearer <token>' header is required."}
BEARER = bearer_scheme.scheme_name  # the name of the scheme in components/securitySchemes


def document_unauthorized(app: FastAPI) -> None:
    """Make `app.openapi()` list a 401 on every operation that declares the bearer security scheme.

    FastAPI adds `security` from the `HTTPBearer` dependency of `get_tenant` but no response for it; a 401
    listed app-wide would also claim one for `/healthz` and `/metrics`, which need no token. An operation
    that lists a 401 of its own without the dependency (the artifact download: a signed link or a token)
    takes the token optionally, which OpenAPI spells as the scheme or nothing.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # cached by FastAPI; the edit below is idempotent
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                if operation.get("security"):
                    responses.setdefault("401", UNAUTHORIZED)
                elif "401" in responses:
                    operation["security"] = [{BEARER: []}, {}]
                    responses["401"] = responses["401"] or UNAUTHORIZED
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


API_STORAGE_ATTEMPTS = 3


class StorageUrlContext:
    """Sets `api.schemas.STORAGE_URL` for each request, so responses hide this app's local storage root."""

    def __init__(self, app: ASGIApp, storage_url: str) -> None:
        self.app, self.storage_url = app, storage_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = STORAGE_URL.set(self.storage_url)
        try:
            await self.app(scope, receive, send)
        finally:
            STORAGE_URL.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    load_plugins(settings)  # extra job and dataset kinds register themselves (api.schemas loaded them too)
    check_signing_key(settings)
    settings.ensure_home()
    configure_logging(secrets=secrets_of(settings))
    app = FastAPI(
        title="synthjobs",
        version=__version__,
        description=DESCRIPTION,
        responses=COMMON_RESPONSES,
        dependencies=[Depends(refuse_unstorable_params)],  # a NUL in a URL would be a 500 on PostgreSQL
    )
    app.state.settings = settings
    app.state.session_factory = session_factory(settings)
    app.state.quota = QuotaGuard(settings)
    app.state.sender = make_sender(settings)
    # One retry layer per storage (botocore's for S3, RetryingStorage's otherwise), with the API's small
    # budget in both: a request waits seconds for storage, not a minute.
    app.state.storage = RetryingStorage(
        open_storage(settings, s3_max_attempts=API_STORAGE_ATTEMPTS),
        attempts=API_STORAGE_ATTEMPTS,
        deadline=5.0,
    )
    app.state.signing_key = signing_key(settings)
    install_error_handlers(app)
    app.add_middleware(
        BodyLimits, max_json_bytes=settings.max_request_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(StorageUrlContext, storage_url=app.state.storage.url)
    app.include_router(jobs.kind_router())  # plugin kinds' submit routes, before `/v1/jobs/{job_id}`
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(models.router)
    app.include_router(datasets.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    install_ui(app, settings)
    document_unauthorized(app)
    return app
