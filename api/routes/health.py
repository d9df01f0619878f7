"""Liveness of the service and of each thing it depends on."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SenderDep, SessionDep, StorageDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def check_health(session: SessionDep, sender: SenderDep, storage: StorageDep) -> JSONResponse:
    """Check SQL, the broker and storage; 503 names whichever is down."""
    checks = {"database": "ok", "broker": "ok", "storage": "ok"}
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        checks["database"] = f"down: {type(exc).__name__}: {exc}"[:300]
    try:
        with sender.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"down: {type(exc).__name__}: {exc}"[:300]
    try:
        storage.check()
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"down: {exc}"[:300]
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    return JSONResponse(status_code=200 if healthy else 503, content=body.model_dump())
