"""Events between services: outbox, ordered feed, polling consumer with an inbox.

A producer writes CloudEvents 1.0 into its `outbox` in the transaction of the
change. It serves them at `GET /internal/v1/events?after=<cursor>&limit=`. A
consumer polls each producer it subscribes to and applies a batch, its inbox rows
and its new cursor in one transaction: after a crash the batch is applied again,
once.

Several workers and replicas of a service consume the same feed into the same
database. The batch's transaction first locks the consumer's cursor row (`SELECT
... FOR UPDATE`; on SQLite the write transaction already excludes every other
writer) and applies the batch only if the cursor is still the one the batch was
fetched from: a worker that lost the race drops its copy of the batch and fetches
again from the cursor the winner left. So workers take turns, a batch is never
applied side by side (no duplicate-key errors, no wasted work), and the cursor
never moves back. The HTTP fetch happens outside any transaction.

Ordering: on PostgreSQL a row is served only when every transaction that started
before it has finished (`txid < xmin` of the current snapshot), ordered by
(txid, seq). A transaction that took seq 9 but commits after one that took seq 10
can therefore never be skipped. On SQLite writers are serialized, so seq order is
commit order.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import Database, DbSession
from services.common.dead_letters import error_text, is_parked, park
from services.common.errors import DomainError
from services.common.identifiers import AsciiInt
from services.common.models import ConsumerCursor, InboxEvent, OutboxEvent
from services.common.routing import ServiceRoute

log = logging.getLogger("socialsec.events")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 JSON event."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)


class FeedPage(BaseModel):
    items: list[CloudEvent]
    next_cursor: str


class Outbox:
    """Writes a service's events into its outbox, inside the caller's transaction."""

    def __init__(self, source: str) -> None:
        self.source = f"/socialsec/{source}"

    def emit(
        self,
        session: AsyncSession,
        *,
        type: str,
        data: BaseModel | Mapping[str, Any],
        subject: str | None = None,
        time: datetime | None = None,
    ) -> OutboxEvent:
        """Add an event to the current transaction."""
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
        row = OutboxEvent(
            event_id=str(uuid.uuid4()),
            type=type,
            source=self.source,
            subject=subject,
            time=time or datetime.now(UTC),
            data=payload,
        )
        session.add(row)
        return row


def _parse_cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return (0, 0)
    try:
        t, s = cursor.split(".", 1)
        return (int(t), int(s))
    except ValueError:
        raise InvalidCursor() from None


def _format_cursor(txid: int, seq: int) -> str:
    return f"{txid}.{seq}"


class InvalidCursor(DomainError):
    status = 422
    code = "cursor_invalid"
    title_zh = "游标无效"
    title_en = "Invalid cursor"


class InternalAuthRequired(DomainError):
    status = 401
    code = "internal_credential_required"
    title_zh = "需要内部服务凭证"
    title_en = "Internal service credential required"


async def read_feed(session: AsyncSession, *, after: str | None, limit: int) -> FeedPage:
    """Events after a cursor, never skipping one whose transaction commits later."""
    txid, seq = _parse_cursor(after)
    stmt = select(OutboxEvent).where(
        or_(OutboxEvent.txid > txid, and_(OutboxEvent.txid == txid, OutboxEvent.seq > seq))
    )
    if session.get_bind().dialect.name == "postgresql":
        horizon = (await session.execute(text("SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"))).scalar_one()
        stmt = stmt.where(OutboxEvent.txid < horizon)
    stmt = stmt.order_by(OutboxEvent.txid, OutboxEvent.seq).limit(limit)
    rows = (await session.execute(stmt)).scalars().all()
    items = [
        CloudEvent(id=r.event_id, source=r.source, type=r.type, time=r.time, subject=r.subject, data=r.data)
        for r in rows
    ]
    next_cursor = _format_cursor(rows[-1].txid, rows[-1].seq) if rows else _format_cursor(txid, seq)
    return FeedPage(items=items, next_cursor=next_cursor)


def require_internal(request: Request) -> None:
    """Bearer SOCIALSEC_INTERNAL_TOKEN, compared in constant time."""
    expected: str = request.app.state.internal_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise InternalAuthRequired()


def feed_router() -> APIRouter:
    """`GET /internal/v1/events`: the producer side of the default transport."""
    router = APIRouter(tags=["internal"], include_in_schema=False)

    @router.get("/internal/v1/events", response_model=FeedPage, dependencies=[Depends(require_internal)])
    async def events_feed(
        session: DbSession,
        after: Annotated[str | None, Query(max_length=60)] = None,
        limit: Annotated[AsciiInt, Query(ge=1, le=1000)] = 200,
    ) -> FeedPage:
        return await read_feed(session, after=after, limit=limit)

    return router


Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


class FeedConsumer:
    """Polls one producer's feed and applies its events exactly once."""

    def __init__(
        self,
        *,
        producer: str,
        base_url: str,
        db: Database,
        handlers: Mapping[str, Handler],
        token: str,
        batch_size: int = 200,
        interval: float = 0.5,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 5,
        service: str = "",
    ) -> None:
        self.producer = producer
        self.base_url = base_url.rstrip("/")
        self.db = db
        self.handlers = dict(handlers)
        self.token = token
        self.batch_size = batch_size
        self.interval = interval
        self._client = client
        self._own_client = client is None
        # One batch at a time per process: the background loop and a request's
        # catch-up never apply the same batch side by side.
        self._lock = asyncio.Lock()
        self._cursor_row_exists = False
        # Poison events: failures per event id (this process); parked after max_attempts.
        self.max_attempts = max_attempts
        self.service = service
        self._failures: dict[str, tuple[int, str]] = {}

    async def _fetch(self, cursor: str) -> FeedPage:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        resp = await self._client.get(
            f"{self.base_url}/internal/v1/events",
            params={"after": cursor, "limit": self.batch_size},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        resp.raise_for_status()
        return FeedPage.model_validate(resp.json())

    async def current_cursor(self) -> str:
        async with self.db.sessionmaker() as session:
            row = await session.get(ConsumerCursor, self.producer)
            return row.cursor if row else "0.0"

    async def _ensure_cursor_row(self) -> None:
        """The cursor row exists (at the start of the feed), so that workers can lock it."""
        async with self.db.sessionmaker() as session, session.begin():
            insert: Any
            if session.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            await session.execute(
                insert(ConsumerCursor)
                .values(producer=self.producer, cursor="0.0", updated_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["producer"])
            )
        self._cursor_row_exists = True

    # A worker that keeps losing the race to others lets them go on and polls again next round.
    RACES_BEFORE_GIVING_WAY = 5

    async def poll_once(self) -> int:
        """Fetch one batch and apply it with the new cursor in one transaction; the count applied.

        When another worker applied the batch first, fetch again from where it left the cursor.
        """
        async with self._lock:
            if not self._cursor_row_exists:
                await self._ensure_cursor_row()
            for _ in range(self.RACES_BEFORE_GIVING_WAY):
                applied = await self._apply_next_batch()
                if applied is not None:
                    return applied
            return 0

    async def _apply_next_batch(self) -> int | None:
        """The count applied; None when another worker moved the cursor meanwhile (nothing done)."""
        cursor = await self.current_cursor()
        page = await self._fetch(cursor)
        if not page.items:
            return 0
        applied = 0
        async with self.db.sessionmaker() as session, session.begin():
            # Workers and replicas take turns here; the loser finds the cursor moved and drops its batch.
            locked = (
                await session.execute(
                    select(ConsumerCursor).where(ConsumerCursor.producer == self.producer).with_for_update()
                )
            ).scalar_one_or_none()
            if (locked.cursor if locked is not None else "0.0") != cursor:
                return None
            for ev in page.items:
                if await session.get(InboxEvent, ev.id) is not None or await is_parked(session, ev.id):
                    continue
                failures = self._failures.get(ev.id)
                if failures is not None and failures[0] >= self.max_attempts:  # park it, move on
                    await park(session, service=self.service, producer=self.producer, event=ev,
                               error=failures[1], attempts=failures[0])
                    del self._failures[ev.id]
                    continue
                handler = self.handlers.get(ev.type)
                if handler is not None:
                    try:
                        await handler(session, ev)
                    except Exception as exc:
                        self._failures[ev.id] = ((failures[0] if failures else 0) + 1, error_text(exc))
                        raise
                    self._failures.pop(ev.id, None)
                    applied += 1
                session.add(InboxEvent(event_id=ev.id, producer=self.producer, type=ev.type, applied_at=datetime.now(UTC)))
                await session.flush()
            if locked is None:
                session.add(ConsumerCursor(producer=self.producer, cursor=page.next_cursor, updated_at=datetime.now(UTC)))
            else:
                locked.cursor = page.next_cursor
                locked.updated_at = datetime.now(UTC)
        return applied

    async def lag(self) -> int:
        """Events the producer serves after this consumer's cursor (counted up to one batch)."""
        return len((await self._fetch(await self.current_cursor())).items)

    async def drain(self, max_batches: int = 1000) -> int:
        """Poll until the feed has nothing new (tests and catch-up)."""
        total = 0
        for _ in range(max_batches):
            before = await self.current_cursor()
            total += await self.poll_once()
            if await self.current_cursor() == before:
                break
        return total

    async def catch_up(self, within_seconds: float) -> bool:
        """Apply everything the producer has published so far; False when it could not in time."""
        try:
            async with asyncio.timeout(within_seconds):
                await self.drain(max_batches=100)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the producer is down or slow: the caller keeps its refusal
            log.warning("feed %s catch-up failed: %s", self.producer, type(exc).__name__)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until stopped; back off on errors, never die."""
        delay = self.interval
        while not stop.is_set():
            try:
                while await self.poll_once() > 0 and not stop.is_set():
                    pass
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the producer may be down; keep trying
                log.warning("feed %s poll failed: %s", self.producer, type(exc).__name__)
                delay = min(delay * 2, 10.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


# The route class every service router uses (kept under its old name here).
ReadModelRoute = ServiceRoute
