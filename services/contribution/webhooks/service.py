"""A unit's webhook endpoint: set, read, rotate its secret, delete; its deliveries listed and retried.

The unit is the caller's: an agency principal's or an employer principal's credit code.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.pagination import keyset_page
from services.common.principal import Principal
from services.contribution.webhooks.errors import (
    WebhookDeliveryNotFound,
    WebhookDisabled,
    WebhookEventUnknown,
    WebhookNotFound,
)
from services.contribution.webhooks.models import (
    DeliveryStatus,
    EndpointStatus,
    UnitKind,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from services.contribution.webhooks.safety import Resolver, check_destination

# After a rotation the previous secret signs too, for this long.
PREVIOUS_SECRET_TTL = timedelta(hours=24)
SECRET_BYTES = 24


def new_secret() -> str:
    """`whsec_` and the base64 of 24 random bytes (Standard Webhooks' secret format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def unit_of(principal: Principal) -> tuple[str, str]:
    """(kind, credit code) of the calling agency or employer."""
    assert principal.credit_code  # check_principal refuses a unit principal without one
    return str(UnitKind(principal.kind)), principal.credit_code.strip().upper()


def check_events(events: list[str] | None) -> list[str]:
    """The subscribed types, in a fixed order; all of them when none are named."""
    if events is None:
        return [str(t) for t in WebhookEventType]
    known = {str(t) for t in WebhookEventType}
    unknown = sorted({e for e in events if e not in known})
    if unknown or not events:
        raise WebhookEventUnknown(
            detail_zh=f"支持的事件：{'、'.join(sorted(known))}", detail_en=f"Known events: {', '.join(sorted(known))}",
            params={"unknown": unknown, "known": sorted(known)},
        )
    return [str(t) for t in WebhookEventType if str(t) in set(events)]


async def live_endpoint(*, session: AsyncSession, unit_kind: str, credit_code: str) -> WebhookEndpoint | None:
    """The unit's endpoint (not deleted), if any."""
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.unit_kind == unit_kind, WebhookEndpoint.credit_code == credit_code,
        WebhookEndpoint.deleted_at.is_(None),
    ).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().first()


async def get_endpoint(*, session: AsyncSession, principal: Principal) -> WebhookEndpoint:
    """The caller's endpoint; 404 webhook_not_found without one."""
    kind, code = unit_of(principal)
    endpoint = await live_endpoint(session=session, unit_kind=kind, credit_code=code)
    if endpoint is None:
        raise WebhookNotFound()
    return endpoint


async def put_endpoint(
    *, session: AsyncSession, principal: Principal, url: str, events: list[str] | None, now: datetime,
    allow_insecure: bool, resolver: Resolver,
) -> tuple[WebhookEndpoint, str | None]:
    """Create the unit's endpoint (with a new secret, answered once) or change its URL and events.

    Setting a disabled endpoint again enables it.
    """
    kinds = check_events(events)
    dest = await check_destination(url, allow_insecure=allow_insecure, resolver=resolver)
    kind, code = unit_of(principal)
    clean_url = str(dest.url)
    for _attempt in range(2):
        endpoint = await live_endpoint(session=session, unit_kind=kind, credit_code=code)
        if endpoint is not None:
            endpoint.url = clean_url
            endpoint.events = kinds
            endpoint.updated_at = now
            if endpoint.status == EndpointStatus.disabled:
                endpoint.status = EndpointStatus.enabled
                endpoint.disabled_reason = endpoint.disabled_detail = None
                endpoint.disabled_at = endpoint.failing_since = None
            await session.flush()
            return endpoint, None
        secret = new_secret()
        endpoint = WebhookEndpoint(
            id=str(uuid.uuid4()), unit_kind=kind, credit_code=code, url=clean_url, events=kinds, secret=secret,
            status=EndpointStatus.enabled, created_at=now, updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(endpoint)
                await session.flush()
        except IntegrityError:
            continue  # created at the same moment by another request: update that one
        return endpoint, secret
    raise RuntimeError("webhook endpoint could not be created or found")


async def rotate_secret(*, session: AsyncSession, principal: Principal, now: datetime) -> tuple[WebhookEndpoint, str]:
    """A new secret (answered once); the current one keeps signing for 24 hours."""
    endpoint = await get_endpoint(session=session, principal=principal)
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_TTL
    endpoint.secret = secret
    endpoint.secret_rotated_at = now
    endpoint.updated_at = now
    await session.flush()
    return endpoint, secret


async def delete_endpoint(*, session: AsyncSession, principal: Principal, now: datetime) -> None:
    """Delete the unit's endpoint; deliveries not yet made are given up (their history stays listed)."""
    endpoint = await get_endpoint(session=session, principal=principal)
    endpoint.deleted_at = now
    endpoint.updated_at = now
    await give_up_deliveries(session=session, endpoint_id=endpoint.id, now=now, why="webhook_deleted")
    await session.flush()


async def give_up_deliveries(*, session: AsyncSession, endpoint_id: str, now: datetime, why: str) -> None:
    """Every delivery of the endpoint still to be made is failed, with the reason."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id,
               WebhookDelivery.status.in_((DeliveryStatus.pending, DeliveryStatus.sending)))
        .values(status=DeliveryStatus.failed, failed_at=now, next_attempt_at=None, claimed_until=None, last_error=why)
        .execution_options(synchronize_session=False)
    )


async def list_deliveries(
    *, session: AsyncSession, principal: Principal, status: DeliveryStatus | None, limit: int, cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    """The unit's deliveries, newest first (keyset pages by creation time and id)."""
    kind, code = unit_of(principal)
    stmt = select(WebhookDelivery).where(WebhookDelivery.unit_kind == kind, WebhookDelivery.credit_code == code)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    page = await keyset_page(session, stmt, keys=[WebhookDelivery.created_at, WebhookDelivery.id], cursor=cursor,
                             limit=limit, descending=True)
    return page.rows, page.next_cursor


async def retry_delivery(*, session: AsyncSession, principal: Principal, delivery_id: str, now: datetime) -> WebhookDelivery:
    """Send a delivery again at the next sender pass (one more attempt for a failed one)."""
    kind, code = unit_of(principal)
    delivery = await session.get(WebhookDelivery, delivery_id) if len(delivery_id) <= 36 else None
    if delivery is None or delivery.unit_kind != kind or delivery.credit_code != code:
        raise WebhookDeliveryNotFound()
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or endpoint.deleted_at is not None:
        raise WebhookNotFound()
    if endpoint.status == EndpointStatus.disabled:
        raise WebhookDisabled(params={"disabled_reason": endpoint.disabled_reason})
    if delivery.status != DeliveryStatus.sending:
        delivery.status = DeliveryStatus.pending
        delivery.next_attempt_at = now
        delivery.claimed_until = None
        delivery.failed_at = None
        await session.flush()
    return delivery
