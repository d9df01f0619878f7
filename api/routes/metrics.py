"""Prometheus scrape endpoint: `GET /metrics`, without auth, computed from SQL and the broker per scrape."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep
from synthjobs.maintenance.metrics import CONTENT_TYPE, collect

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def get_metrics(session: SessionDep, settings: SettingsDep) -> Response:
    """Service metrics in the Prometheus text format 0.0.4."""
    return Response(collect(session, settings), media_type=CONTENT_TYPE)
