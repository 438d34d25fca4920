"""Webhook routes of agencies and employers (HTTP only): the unit's endpoint, its deliveries."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.common.clock import ClockDep, aware
from services.common.db import DbSession
from services.common.errors import wants_english
from services.common.events import ReadModelRoute
from services.common.identifiers import AsciiInt
from services.common.pagination import CursorQuery
from services.common.paths import IdPath
from services.common.principal import Principal, require
from services.contribution.webhooks import service
from services.contribution.webhooks.delivery import runtime_of
from services.contribution.webhooks.models import (
    DeliveryStatus,
    EndpointStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from services.contribution.webhooks.schemas import DeliveryOut, DeliveryPage, WebhookIn, WebhookOut

router = APIRouter(prefix="/contribution/v1/webhook", tags=["webhooks"], route_class=ReadModelRoute)

Unit = Annotated[Principal, Depends(require("agency", "employer"))]
_WHO: dict[int | str, dict[str, Any]] = {
    401: {"description": "principal_required"},
    403: {"description": "principal_kind_not_allowed (agency or employer only)"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "webhook_not_found"}}


def _when(value: Any) -> Any:
    return aware(value) if value is not None else None


def _disabled_message(endpoint: WebhookEndpoint, english: bool) -> str | None:
    if endpoint.status != EndpointStatus.disabled:
        return None
    since = _when(endpoint.failing_since)
    last = endpoint.disabled_detail or "-"
    if english:
        return f"Disabled: every delivery failed for 5 days (since {since.isoformat() if since else '-'}; last: {last}). " \
               "Fix the receiver, then set the endpoint again with PUT."
    return f"已停用：连续5天投递失败（自 {since.isoformat() if since else '-'} 起；最近一次：{last}）。请修复接收端后重新设置（PUT）。"


def endpoint_out(request: Request, endpoint: WebhookEndpoint, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id, url=endpoint.url, events=list(endpoint.events), status=EndpointStatus(endpoint.status),
        disabled_reason=endpoint.disabled_reason, disabled_message=_disabled_message(endpoint, wants_english(request)),
        disabled_at=_when(endpoint.disabled_at), failing_since=_when(endpoint.failing_since),
        last_success_at=_when(endpoint.last_success_at), created_at=aware(endpoint.created_at),
        updated_at=aware(endpoint.updated_at), secret_rotated_at=_when(endpoint.secret_rotated_at),
        previous_secret_expires_at=_when(endpoint.previous_secret_expires_at), secret=secret,
    )


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, webhook_id=d.event_id, type=d.event_type, status=DeliveryStatus(d.status), attempts=d.attempts,
        next_attempt_at=_when(d.next_attempt_at), last_attempt_at=_when(d.last_attempt_at),
        last_status_code=d.last_status_code, last_error=d.last_error, created_at=aware(d.created_at),
        succeeded_at=_when(d.succeeded_at), failed_at=_when(d.failed_at), payload=json.loads(d.payload),
    )


@router.put(
    "", response_model=WebhookOut,
    responses={422: {"description": "webhook_url_invalid, webhook_url_forbidden, webhook_event_unknown, "
                                    "validation_failed"}, **_WHO},
    summary="Set the unit's webhook endpoint (the secret is answered once, when it is created)",
)
async def put_webhook(
    request: Request, session: DbSession, clock: ClockDep, principal: Unit, body: WebhookIn,
) -> WebhookOut:
    """Creates the unit's endpoint, or changes its URL and events (setting a disabled endpoint enables it again).
    Deliveries are signed as Standard Webhooks says, with the `whsec_` secret answered only on creation."""
    rt = runtime_of(request.app)
    endpoint, secret = await service.put_endpoint(
        session=session, principal=principal, url=body.url, events=body.events, now=clock.now(),
        allow_insecure=rt.allow_insecure, resolver=rt.resolver,
    )
    return endpoint_out(request, endpoint, secret)


@router.get("", response_model=WebhookOut, responses={**_NOT_FOUND, **_WHO},
            summary="The unit's webhook endpoint: URL, events, status and why it is disabled")
async def get_webhook(request: Request, session: DbSession, principal: Unit) -> WebhookOut:
    return endpoint_out(request, await service.get_endpoint(session=session, principal=principal))


@router.delete("", status_code=204, response_class=Response, responses={**_NOT_FOUND, **_WHO},
               summary="Delete the unit's webhook endpoint (deliveries not yet made are given up)")
async def delete_webhook(session: DbSession, clock: ClockDep, principal: Unit) -> Response:
    await service.delete_endpoint(session=session, principal=principal, now=clock.now())
    return Response(status_code=204)


@router.post("/secret-rotation", response_model=WebhookOut, responses={**_NOT_FOUND, **_WHO},
             summary="A new signing secret (answered once); the old one also signs for 24 hours")
async def rotate_webhook_secret(request: Request, session: DbSession, clock: ClockDep, principal: Unit) -> WebhookOut:
    """While both secrets sign, `webhook-signature` carries two `v1,...` signatures separated by a space."""
    endpoint, secret = await service.rotate_secret(session=session, principal=principal, now=clock.now())
    return endpoint_out(request, endpoint, secret)


@router.get("/deliveries", response_model=DeliveryPage, responses={422: {"description": "cursor_invalid"}, **_WHO},
            summary="The unit's webhook deliveries, newest first (keyset pages)")
async def list_webhook_deliveries(
    session: DbSession, principal: Unit,
    status: Annotated[DeliveryStatus | None, Query(description="pending, sending, succeeded or failed")] = None,
    limit: Annotated[AsciiInt, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> DeliveryPage:
    rows, nxt = await service.list_deliveries(session=session, principal=principal, status=status, limit=limit,
                                              cursor=cursor)
    return DeliveryPage(items=[delivery_out(d) for d in rows], next_cursor=nxt)


@router.post(
    "/deliveries/{delivery_id:id}/retry", response_model=DeliveryOut,
    responses={404: {"description": "webhook_delivery_not_found, webhook_not_found"},
               409: {"description": "webhook_disabled"}, **_WHO},
    summary="Send a delivery again (at the sender's next pass)",
)
async def retry_webhook_delivery(
    session: DbSession, clock: ClockDep, principal: Unit, delivery_id: IdPath,
) -> DeliveryOut:
    delivery = await service.retry_delivery(session=session, principal=principal, delivery_id=delivery_id,
                                            now=clock.now())
    return delivery_out(delivery)
