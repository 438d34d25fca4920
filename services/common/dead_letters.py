"""Poison events, on either transport: an event whose handler failed
`SOCIALSEC_EVENT_MAX_ATTEMPTS` times is parked in the consumer's `dead_letters`
table with its error, and the consumer moves on. Staff admins list parked events
and replay one (`GET /<service>/v1/ops/dead-letters`,
`POST /<service>/v1/ops/dead-letters/{number}/replay`); a replay applies the event
with its inbox row in one transaction, exactly as the consumer would have.
`socialsec_events_dead_lettered_total` counts the parked events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import ClockDep
from services.common.db import DbSession
from services.common.errors import DomainError
from services.common.models import DeadLetter, InboxEvent
from services.common.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, keyset_page
from services.common.pii import redact
from services.common.principal import StaffAdmin
from services.common.routing import ServiceRoute

if TYPE_CHECKING:
    from services.common.events import CloudEvent

DEAD_LETTERED = Counter(
    "socialsec_events_dead_lettered_total",
    "Events parked in dead_letters after their handler kept failing",
    ["service", "producer"],
)

_ERROR_MAX = 2000


def error_text(exc: BaseException) -> str:
    """The exception's class and message, bounded, id numbers masked."""
    return redact(f"{type(exc).__name__}: {exc}")[:_ERROR_MAX]


async def park(
    session: AsyncSession, *, service: str, producer: str, event: CloudEvent, error: str, attempts: int
) -> None:
    """Park an event in the caller's transaction (a second parking of the same event updates it)."""
    row = (await session.execute(select(DeadLetter).where(DeadLetter.event_id == event.id))).scalar_one_or_none()
    now = datetime.now(UTC)
    if row is None:
        session.add(DeadLetter(
            producer=producer, event_id=event.id, type=event.type, event=event.model_dump(mode="json"),
            error=error, attempts=attempts, parked_at=now,
        ))
    else:
        row.error, row.attempts, row.parked_at, row.replayed_at = error, attempts, now, None
    await session.flush()
    DEAD_LETTERED.labels(service=service, producer=producer).inc()


async def is_parked(session: AsyncSession, event_id: str) -> bool:
    """Parked and not replayed: a redelivery of it is acknowledged, not applied."""
    row = (await session.execute(
        select(DeadLetter.id).where(DeadLetter.event_id == event_id, DeadLetter.replayed_at.is_(None))
    )).scalar_one_or_none()
    return row is not None


class DeadLetterOut(BaseModel):
    id: int
    producer: str
    event_id: str
    type: str
    error: str
    attempts: int
    parked_at: datetime
    replayed_at: datetime | None
    event: dict[str, Any]


class DeadLetterNotFound(DomainError):
    status = 404
    code = "dead_letter_not_found"
    title_zh = "未找到该搁置事件"
    title_en = "Parked event not found"


class DeadLetterAlreadyReplayed(DomainError):
    status = 409
    code = "dead_letter_already_replayed"
    title_zh = "该搁置事件已重放"
    title_en = "Parked event already replayed"


class DeadLetterReplayFailed(DomainError):
    status = 409
    code = "dead_letter_replay_failed"
    title_zh = "事件重放失败，仍处于搁置状态"
    title_en = "Replay failed; the event stays parked"
    keeps_changes = True  # the new error is recorded on the parked row


def _out(row: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=row.id, producer=row.producer, event_id=row.event_id, type=row.type, error=row.error,
        attempts=row.attempts, parked_at=row.parked_at, replayed_at=row.replayed_at, event=row.event,
    )


def dead_letters_router(service: str) -> APIRouter:
    """`/<service>/v1/ops/dead-letters`: staff admins list and replay parked events."""
    router = APIRouter(prefix=f"/{service}/v1/ops", tags=["ops"], route_class=ServiceRoute)

    @router.get("/dead-letters", response_model=Page[DeadLetterOut],
                summary="Parked events: handlers failed them the configured number of times (newest first)")
    async def list_dead_letters(
        session: DbSession,
        principal: StaffAdmin,
        replayed: Annotated[bool | None, Query(description="only replayed (true) or only waiting (false)")] = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        cursor: CursorQuery = None,
    ) -> Page[DeadLetterOut]:
        stmt = select(DeadLetter)
        if replayed is not None:
            stmt = stmt.where(DeadLetter.replayed_at.is_not(None) if replayed else DeadLetter.replayed_at.is_(None))
        page = await keyset_page(session, stmt, keys=[DeadLetter.id], cursor=cursor, limit=limit, descending=True)
        return Page[DeadLetterOut](items=[_out(r) for r in page.rows], next_cursor=page.next_cursor)

    @router.post("/dead-letters/{number:int}/replay", response_model=DeadLetterOut,
                 summary="Apply a parked event now, with its inbox row; it stays parked with the new error if it fails",
                 responses={404: {"description": "dead_letter_not_found"},
                            409: {"description": "dead_letter_already_replayed, dead_letter_replay_failed"}})
    async def replay_dead_letter(
        number: Annotated[int, Path(ge=1, description="the parked event's number (`id` in the list)")],
        request: Request, clock: ClockDep, session: DbSession, principal: StaffAdmin,
    ) -> DeadLetterOut:
        row = await session.get(DeadLetter, number)
        if row is None:
            raise DeadLetterNotFound()
        if row.replayed_at is not None:
            raise DeadLetterAlreadyReplayed()
        from services.common.events import CloudEvent

        ev = CloudEvent.model_validate(row.event)
        now = clock.now()
        if await session.get(InboxEvent, ev.id) is None:
            handler = request.app.state.consumer_handlers.get(row.producer, {}).get(ev.type)
            try:
                async with session.begin_nested():
                    if handler is not None:
                        await handler(session, ev)
                    session.add(InboxEvent(event_id=ev.id, producer=row.producer, type=ev.type, applied_at=now))
                    await session.flush()
            except Exception as exc:
                row.error, row.attempts = error_text(exc), row.attempts + 1
                record_audit(session, actor=principal, action="dead_letter.replay_failed", target_type="dead_letter",
                             target_id=str(row.id), at=now, details={"event_id": ev.id, "type": ev.type})
                raise DeadLetterReplayFailed(params={"error": row.error}) from None
        row.replayed_at = now
        record_audit(session, actor=principal, action="dead_letter.replay", target_type="dead_letter",
                     target_id=str(row.id), at=now, details={"event_id": ev.id, "type": ev.type})
        await session.flush()
        return _out(row)

    return router
