"""From the outbox to the units' receivers: the fan-out pass and the sender pass.

Fan-out: reads this service's own outbox after a stored cursor, with the feed's
ordering rule (`events.read_feed`: on PostgreSQL only rows of finished transactions,
by (txid, seq), so a late-committing row is never skipped), and writes one delivery
per event and matching endpoint (unique per event and endpoint) with the cursor, in
one transaction. The cursor row is locked for the pass, so two passes at once take
turns; the unique constraint would stop a duplicate anyway.

Sending: claims due deliveries (a conditional update, committed), POSTs them outside
any transaction (10 s for the whole attempt, no redirects, to a checked address), and
records each result in a short transaction of its own. A failure is retried after
5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, then the delivery is `failed`; an
endpoint whose deliveries have all failed for 5 days is disabled, with the reason.

Which unit an event is for:
- `payment.succeeded` (`contribution.declaration.paid.v1`) and `payment.refund_pending`
  (`contribution.payment.refund_pending.v1`), and `payment.refunded`
  (`contribution.payment.refunded.v1`): an employer declaration's or an
  assessment's employer; else the agency that made the declaration for the person,
  else the agency that opened the payment; a citizen paying their own declaration
  is nobody's unit.
- `declaration.expired` (`contribution.declaration.expired.v1`): the employer of an
  employer declaration or assessment; the agency of a declaration an agency made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from services.common.clock import Clock, aware
from services.common.db import Database
from services.common.events import CloudEvent, read_feed
from services.contribution.events import (
    DECLARATION_EXPIRED,
    DECLARATION_PAID,
    PAYMENT_REFUND_PENDING,
    PAYMENT_REFUNDED,
)
from services.contribution.models import Declaration, DeclarationSource, KnownPerson
from services.contribution.payments.models import Payment
from services.contribution.settings import Settings
from services.contribution.webhooks.errors import WebhookUrlForbidden, WebhookUrlInvalid
from services.contribution.webhooks.models import (
    DeliveryStatus,
    EndpointStatus,
    UnitKind,
    WebhookCursor,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from services.contribution.webhooks.safety import Resolver, check_destination, system_resolver
from services.contribution.webhooks.service import give_up_deliveries, live_endpoint

log = logging.getLogger("socialsec.contribution.webhooks")

CURSOR_NAME = "webhooks"
BACKOFF = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=10),
)
DISABLE_AFTER = timedelta(days=5)
DISABLED_REASON = "failing_for_5_days"
_EMPLOYER_SOURCES = (DeclarationSource.employer, DeclarationSource.assessment)


# ---- runtime: the HTTP client and resolver of one service process -------------------------


class WebhookRuntime:
    """What the sender needs: settings, an HTTP client (no redirects, no proxies from the environment), a resolver."""

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None,
                 resolver: Resolver | None = None) -> None:
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self.resolver: Resolver = resolver or system_resolver

    @property
    def client(self) -> httpx.AsyncClient:
        """The sender's client, made on first use."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False,
            )
        return self._client

    @property
    def allow_insecure(self) -> bool:
        return self.settings.webhook_allow_insecure

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


def runtime_of(app: Any) -> WebhookRuntime:
    """The app's webhook runtime, created on first use (tests put their own in `app.state.webhook_runtime`)."""
    rt: WebhookRuntime | None = getattr(app.state, "webhook_runtime", None)
    if rt is None:
        rt = WebhookRuntime(app.state.settings)
        app.state.webhook_runtime = rt
    return rt


# ---- fan-out ---------------------------------------------------------------------------------------


@dataclass
class Notice:
    """An event for one unit, as its receiver will see it."""

    unit_kind: str
    credit_code: str
    type: WebhookEventType
    data: dict[str, Any]


def _norm(code: str | None) -> str | None:
    return code.strip().upper() if code else None


def _unit(decl: Declaration, payment: Payment | None) -> tuple[str, str] | None:
    if decl.source in _EMPLOYER_SOURCES and decl.credit_code:
        return str(UnitKind.employer), _norm(decl.credit_code) or ""
    if decl.agency_credit_code:
        return str(UnitKind.agency), _norm(decl.agency_credit_code) or ""
    if payment is not None and payment.opened_by.startswith("agency:"):
        return str(UnitKind.agency), _norm(payment.opened_by.split(":", 1)[1]) or ""
    return None


async def _person_masked(session: AsyncSession, decl: Declaration, payment: Payment | None) -> str | None:
    """The person's masked id number (never the full one); None for an employer's declaration of many people."""
    if decl.source in _EMPLOYER_SOURCES or not decl.person_key:
        return None
    known = (await session.execute(select(KnownPerson.id_masked).where(KnownPerson.id_hash == decl.person_key))).scalars().first()
    return known or (payment.holder_id_masked if payment is not None else None)


def _months(decl: Declaration) -> list[str]:
    return list(decl.months or ([str(decl.year)] if decl.year else []))


async def _payment(session: AsyncSession, payment_id: Any) -> Payment | None:
    if not isinstance(payment_id, str) or len(payment_id) > 36:
        return None
    return await session.get(Payment, payment_id)


async def notice_of(session: AsyncSession, event: CloudEvent) -> Notice | None:
    """The webhook an outbox event makes, and for which unit; None when it concerns no unit."""
    data = event.data
    if event.type in (DECLARATION_PAID, PAYMENT_REFUND_PENDING, PAYMENT_REFUNDED):
        decl = await session.get(Declaration, data.get("declaration_id"))
        if decl is None:
            return None
        payment = await _payment(session, data.get("payment_id"))
        unit = _unit(decl, payment)
        if unit is None:
            return None
        common = {
            "declaration_id": decl.id, "payment_id": data.get("payment_id"),
            "channel": data.get("channel") or (payment.channel if payment else None),
            "category": decl.category, "region_code": decl.region_code, "months": _months(decl),
            "person_id_masked": await _person_masked(session, decl, payment),
            "credit_code": _norm(decl.credit_code) if decl.source in _EMPLOYER_SOURCES else None,
        }
        if event.type == DECLARATION_PAID:
            amount = payment.paid_amount_fen or payment.amount_fen if payment is not None else data.get("total_fen")
            body = {**common, "amount_fen": amount, "paid_by": data.get("paid_by"), "paid_at": data.get("paid_at"),
                    "certificate_code": payment.certificate_code if payment is not None else None}
            return Notice(*unit, type=WebhookEventType.payment_succeeded, data=body)
        if event.type == PAYMENT_REFUNDED:
            body = {**common, "refund_id": data.get("refund_id"), "amount_fen": data.get("amount_fen"),
                    "refunded_total_fen": data.get("refunded_total_fen"), "reason": data.get("reason"),
                    "uncredited": data.get("uncredited"), "refunded_at": data.get("refunded_at")}
            return Notice(*unit, type=WebhookEventType.payment_refunded, data=body)
        body = {**common, "amount_fen": data.get("amount_fen"), "reason": data.get("reason"),
                "flagged_at": data.get("flagged_at")}
        return Notice(*unit, type=WebhookEventType.payment_refund_pending, data=body)
    if event.type == DECLARATION_EXPIRED:
        decl = await session.get(Declaration, data.get("declaration_id"))
        if decl is None:
            return None
        unit = _unit(decl, None)
        if unit is None:
            return None
        body = {
            "declaration_id": decl.id, "source": decl.source, "category": decl.category,
            "region_code": decl.region_code, "months": _months(decl), "total_fen": decl.total_fen,
            "expired_at": data.get("expired_at"), "person_id_masked": await _person_masked(session, decl, None),
            "credit_code": _norm(decl.credit_code) if decl.source in _EMPLOYER_SOURCES else None,
        }
        return Notice(*unit, type=WebhookEventType.declaration_expired, data=body)
    return None


def webhook_body(notice: Notice, event: CloudEvent) -> str:
    """The Standard Webhooks body: `{"type", "timestamp", "data"}` (compact JSON, signed as it is)."""
    payload = {"type": str(notice.type), "timestamp": aware(event.time).astimezone(UTC).isoformat(), "data": notice.data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


async def _lock_cursor(session: AsyncSession, now: datetime) -> WebhookCursor:
    stmt = select(WebhookCursor).where(WebhookCursor.name == CURSOR_NAME).with_for_update()
    row = (await session.execute(stmt.execution_options(populate_existing=True))).scalars().first()
    if row is not None:
        return row
    try:
        async with session.begin_nested():
            session.add(WebhookCursor(name=CURSOR_NAME, cursor="0.0", updated_at=now))
            await session.flush()
    except IntegrityError:
        pass
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalars().one()


async def fan_out(*, db: Database, now: datetime, batch_size: int = 100) -> int:
    """One pass: the next outbox events into deliveries; how many events were read."""
    async with db.sessionmaker() as session, session.begin():
        cursor = await _lock_cursor(session, now)
        page = await read_feed(session, after=cursor.cursor, limit=batch_size)
        if not page.items:
            return 0
        for event in page.items:
            notice = await notice_of(session, event)
            if notice is None:
                continue
            endpoint = await live_endpoint(session=session, unit_kind=notice.unit_kind, credit_code=notice.credit_code)
            if endpoint is None or endpoint.status != EndpointStatus.enabled or str(notice.type) not in endpoint.events:
                continue
            exists = (await session.execute(select(WebhookDelivery.id).where(
                WebhookDelivery.event_id == event.id, WebhookDelivery.endpoint_id == endpoint.id))).first()
            if exists is not None:
                continue
            try:
                async with session.begin_nested():
                    session.add(WebhookDelivery(
                        id=str(uuid.uuid4()), endpoint_id=endpoint.id, unit_kind=notice.unit_kind,
                        credit_code=notice.credit_code, event_id=event.id, event_type=str(notice.type),
                        payload=webhook_body(notice, event), status=DeliveryStatus.pending, attempts=0,
                        next_attempt_at=now, created_at=now,
                    ))
                    await session.flush()
            except IntegrityError:
                continue  # already there: one delivery per event and endpoint
        cursor.cursor = page.next_cursor
        cursor.updated_at = now
        return len(page.items)


# ---- sending ---------------------------------------------------------------------------------------


def sign(*, secrets: list[str], webhook_id: str, timestamp: int, body: str) -> str:
    """`webhook-signature`: one `v1,<base64 HMAC-SHA256>` per secret, separated by spaces."""
    at = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(s).sign(msg_id=webhook_id, timestamp=at, data=body) for s in secrets)


@dataclass
class Attempt:
    delivery_id: str
    webhook_id: str
    url: str
    body: str
    secrets: list[str]


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


async def _claim(*, db: Database, now: datetime, batch_size: int, lease: timedelta) -> list[Attempt]:
    """Claim due deliveries (committed before any call goes out); what to send."""
    due = or_(
        and_(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.status == DeliveryStatus.sending, WebhookDelivery.claimed_until <= now),
    )
    attempts: list[Attempt] = []
    async with db.sessionmaker() as session, session.begin():
        ids = list((await session.execute(
            select(WebhookDelivery.id).where(due).order_by(WebhookDelivery.next_attempt_at).limit(batch_size)
        )).scalars().all())
        for delivery_id in ids:
            res = await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, due)
                .values(status=DeliveryStatus.sending, claimed_until=now + lease)
                .execution_options(synchronize_session=False)
            )
            if int(getattr(res, "rowcount", 0) or 0) != 1:
                continue  # another sender took it
            d = (await session.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                       .execution_options(populate_existing=True))).scalar_one()
            endpoint = await session.get(WebhookEndpoint, d.endpoint_id)
            if endpoint is None or endpoint.deleted_at is not None or endpoint.status != EndpointStatus.enabled:
                d.status, d.failed_at, d.claimed_until, d.next_attempt_at = DeliveryStatus.failed, now, None, None
                d.last_error = "webhook_disabled" if endpoint is not None and endpoint.deleted_at is None else "webhook_deleted"
                continue
            keys = [endpoint.secret]
            if endpoint.previous_secret and endpoint.previous_secret_expires_at and aware(endpoint.previous_secret_expires_at) > now:
                keys.append(endpoint.previous_secret)
            attempts.append(Attempt(delivery_id=d.id, webhook_id=d.event_id, url=endpoint.url, body=d.payload, secrets=keys))
    return attempts


async def post_once(rt: WebhookRuntime, attempt: Attempt, *, now: datetime) -> Outcome:
    """One signed POST; never raises (the outcome says what went wrong)."""
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "socialsec-webhooks/1",
        "webhook-id": attempt.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets=attempt.secrets, webhook_id=attempt.webhook_id, timestamp=timestamp,
                                  body=attempt.body),
    }
    try:
        async with asyncio.timeout(rt.settings.webhook_timeout_seconds):
            dest = await check_destination(attempt.url, allow_insecure=rt.allow_insecure, resolver=rt.resolver)
            url, extra, extensions = dest.request_target()
            request = rt.client.build_request("POST", url, content=attempt.body.encode("utf-8"),
                                              headers={**headers, **extra}, extensions=extensions)
            response = await rt.client.send(request, stream=True, follow_redirects=False)
            await response.aclose()  # the receiver's body is never read
    except TimeoutError:
        return Outcome(ok=False, error="timeout")
    except WebhookUrlForbidden as exc:
        return Outcome(ok=False, error=f"address_forbidden: {exc.params.get('reason')}")
    except WebhookUrlInvalid as exc:
        return Outcome(ok=False, error=f"url_invalid: {exc.params.get('reason')}")
    except httpx.TimeoutException:
        return Outcome(ok=False, error="timeout")
    except httpx.HTTPError as exc:
        return Outcome(ok=False, error=f"connection_failed: {type(exc).__name__}")
    except OSError as exc:
        return Outcome(ok=False, error=f"connection_failed: {type(exc).__name__}")
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(ok=True, status_code=code)
    if 300 <= code < 400:
        return Outcome(ok=False, status_code=code, error="redirect_not_followed")
    return Outcome(ok=False, status_code=code, error=f"http_{code}")


async def record(*, db: Database, delivery_id: str, outcome: Outcome, at: datetime) -> None:
    """Write an attempt's result in a short transaction: done, retried later, failed; the endpoint's health."""
    async with db.sessionmaker() as session, session.begin():
        d = (await session.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
                                   .execution_options(populate_existing=True))).scalars().first()
        if d is None or d.status != DeliveryStatus.sending:
            return  # given up meanwhile (endpoint deleted or disabled)
        d.attempts += 1
        d.last_attempt_at = at
        d.last_status_code = outcome.status_code
        d.last_error = outcome.error[:300] if outcome.error else None
        d.claimed_until = None
        if outcome.ok:
            d.status, d.succeeded_at, d.next_attempt_at = DeliveryStatus.succeeded, at, None
            await session.execute(
                update(WebhookEndpoint).where(WebhookEndpoint.id == d.endpoint_id)
                .values(failing_since=None, last_success_at=at).execution_options(synchronize_session=False)
            )
            return
        if d.attempts > len(BACKOFF):
            d.status, d.failed_at, d.next_attempt_at = DeliveryStatus.failed, at, None
        else:
            d.status, d.next_attempt_at = DeliveryStatus.pending, at + BACKOFF[d.attempts - 1]
        await session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == d.endpoint_id, WebhookEndpoint.failing_since.is_(None))
            .values(failing_since=at).execution_options(synchronize_session=False)
        )
        res = await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == d.endpoint_id, WebhookEndpoint.status == EndpointStatus.enabled,
                   WebhookEndpoint.failing_since <= at - DISABLE_AFTER)
            .values(status=EndpointStatus.disabled, disabled_at=at, disabled_reason=DISABLED_REASON,
                    disabled_detail=d.last_error)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(res, "rowcount", 0) or 0) == 1:
            log.warning("webhook endpoint %s disabled: failing for 5 days (last: %s)", d.endpoint_id, d.last_error)
            await session.flush()
            await give_up_deliveries(session=session, endpoint_id=d.endpoint_id, now=at, why="webhook_disabled")


async def send_due(*, db: Database, rt: WebhookRuntime, clock: Clock) -> int:
    """One pass: claim due deliveries, send them (a few at a time), record each result; how many were sent."""
    settings = rt.settings
    now = clock.now()
    lease = timedelta(seconds=settings.webhook_timeout_seconds + 60)
    attempts = await _claim(db=db, now=now, batch_size=settings.webhook_batch_size, lease=lease)
    if not attempts:
        return 0
    gate = asyncio.Semaphore(settings.webhook_concurrency)

    async def one(attempt: Attempt) -> None:
        async with gate:
            outcome = await post_once(rt, attempt, now=clock.now())
        await record(db=db, delivery_id=attempt.delivery_id, outcome=outcome, at=clock.now())

    for result in await asyncio.gather(*(one(a) for a in attempts), return_exceptions=True):
        if isinstance(result, BaseException):
            log.error("recording a webhook attempt failed: %s", type(result).__name__)
    return len(attempts)
