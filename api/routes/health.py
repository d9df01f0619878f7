"""Liveness of the service and of each thing it depends on.

`/healthz` answers anyone (load balancers send no token), so it says only `ok` or `down` per dependency:
endpoints, URLs and exception text would tell a stranger how the deployment is built. Why a check failed
goes to the API's log.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SenderDep, SessionDep, StorageDep
from api.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def check_health(session: SessionDep, sender: SenderDep, storage: StorageDep) -> JSONResponse:
    """Check SQL, the broker and storage; 503 says which is down (the log says why)."""
    checks = {"database": "ok", "broker": "ok", "storage": "ok"}
    try:
        session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - report, don't raise
        _down(checks, "database")
    try:
        with sender.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception:  # noqa: BLE001
        _down(checks, "broker")
    try:
        storage.check()
    except Exception:  # noqa: BLE001
        _down(checks, "storage")
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    return JSONResponse(status_code=200 if healthy else 503, content=body.model_dump())


def _down(checks: dict[str, str], name: str) -> None:
    """Mark `name` down; the exception being handled goes to the log (secrets redacted there)."""
    checks[name] = "down"
    log.warning("health check: %s is down", name, exc_info=True)
