"""Domain errors → HTTP status codes, in one place."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from api.text import escaped
from synthjobs.errors import (
    DatasetNotFound,
    DeletionRefused,
    InvalidKey,
    InvalidTransition,
    JobNotFound,
    ModelNotFound,
)
from synthjobs.ledger.schedules import ScheduleNotFound
from synthjobs.ledger.webhooks import WebhookNotFound

STATUS_FOR: dict[type[Exception], int] = {
    JobNotFound: 404,
    ModelNotFound: 404,
    DatasetNotFound: 404,
    ScheduleNotFound: 404,
    WebhookNotFound: 404,
    InvalidTransition: 409,
    DeletionRefused: 409,
    InvalidKey: 422,
}


def field_error(loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> list[dict[str, Any]]:
    """A 422 `detail` in FastAPI's own shape, naming the field and the reason."""
    return [{"loc": ["body", *loc], "msg": message, "type": kind}]


def json_safe(value: Any) -> Any:
    """`value` with NaN/inf and other non-JSON values as strings, so a 422 can echo any input back.

    Lone surrogates (JSON's `"\\ud800"`) come back as the escape's text: UTF-8 cannot encode them.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, int | float | bool):
        return value
    return json_safe(str(value))


async def handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape, but never a 500 for an input (NaN, bytes) that JSON cannot carry."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": json_safe(list(exc.errors()))})


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer for an HTTPException, with a detail that is always encodable (see json_safe)."""
    assert isinstance(exc, HTTPException)
    safe = HTTPException(exc.status_code, json_safe(exc.detail), headers=exc.headers)
    return await http_exception_handler(request, safe)


def install_error_handlers(app: FastAPI) -> None:
    """Map each domain error to its status code with its message as `detail`."""
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_error)

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=STATUS_FOR[type(exc)], content={"detail": json_safe(str(exc))})

    for error in STATUS_FOR:
        app.add_exception_handler(error, handle)
