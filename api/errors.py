"""Domain errors → HTTP status codes, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from synthjobs.errors import DatasetNotFound, InvalidKey, InvalidTransition, JobNotFound, ModelNotFound

STATUS_FOR: dict[type[Exception], int] = {
    JobNotFound: 404,
    ModelNotFound: 404,
    DatasetNotFound: 404,
    InvalidTransition: 409,
    InvalidKey: 422,
}


def field_error(loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> list[dict[str, Any]]:
    """A 422 `detail` in FastAPI's own shape, naming the field and the reason."""
    return [{"loc": ["body", *loc], "msg": message, "type": kind}]


def install_error_handlers(app: FastAPI) -> None:
    """Map each domain error to its status code with its message as `detail`."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=STATUS_FOR[type(exc)], content={"detail": str(exc)})

    for error in STATUS_FOR:
        app.add_exception_handler(error, handle)
