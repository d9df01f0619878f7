"""Webhook endpoints of a tenant: register (secret shown once), list, delete, and see their deliveries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import SessionDep, SettingsDep, TenantDep
from api.errors import field_error
from api.schemas import WebhookCreated, WebhookDeliveryOut, WebhookOut, WebhookRequest
from synthjobs.ledger import webhooks
from synthjobs.ledger.tables import Webhook
from synthjobs.maintenance.webhooks import destination_problem

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such webhook."}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={
        409: {"description": "The tenant has as many webhooks as allowed."},
        422: {"description": "The URL is not http(s), does not resolve, or reaches a private address."},
    },
)
def create_webhook(
    body: WebhookRequest, session: SessionDep, settings: SettingsDep, tenant: TenantDep
) -> Webhook:
    """Register an endpoint for some event types; the response carries its signing secret, once."""
    if (problem := destination_problem(body.url, settings)) is not None:
        raise HTTPException(422, field_error(("url",), problem))
    if webhooks.count_webhooks(session, tenant) >= webhooks.MAX_WEBHOOKS_PER_TENANT:
        raise HTTPException(
            409, f"the tenant has {webhooks.MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first"
        )
    row = webhooks.create_webhook(session, tenant, body.url, body.event_types, body.description)
    session.commit()
    return row


@router.get("", response_model=list[WebhookOut])
def list_webhooks(session: SessionDep, tenant: TenantDep) -> list[Webhook]:
    """List the tenant's webhooks (without their secrets)."""
    return list(webhooks.list_webhooks(session, tenant=tenant))


@router.get("/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND)
def get_webhook(webhook_id: str, session: SessionDep, tenant: TenantDep) -> Webhook:
    """Read one webhook (without its secret)."""
    return webhooks.get_webhook(session, webhook_id, tenant=tenant)


@router.delete("/{webhook_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_webhook(webhook_id: str, session: SessionDep, tenant: TenantDep) -> Response:
    """Delete a webhook; its pending deliveries are dropped."""
    webhooks.delete_webhook(session, webhook_id, tenant=tenant)
    session.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=list[WebhookDeliveryOut], responses=NOT_FOUND)
def list_webhook_deliveries(
    webhook_id: str, session: SessionDep, tenant: TenantDep, limit: int = Query(100, ge=1, le=500)
) -> list[Any]:
    """The webhook's deliveries, newest first: state, attempts and the last answer of each."""
    return list(webhooks.list_deliveries(session, webhook_id, tenant=tenant, limit=limit))
