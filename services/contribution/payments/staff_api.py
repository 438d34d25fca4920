"""Money back and books checked: refunds, WeChat Pay refund notifications, daily reconciliation (HTTP only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from services.common.clock import ClockDep
from services.common.db import DbSession
from services.common.identifiers import AsciiInt
from services.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorQuery
from services.common.paths import IdPath
from services.common.principal import Principal, require
from services.common.routing import ServiceRoute
from services.contribution.payments import reconciliation, refunds
from services.contribution.payments.api import (
    _IDEMPOTENCY_REQUIRED,
    _body,
    wechat_answer,
    wechat_notify_responses,
)
from services.contribution.payments.models import PaymentChannel, ReconciliationOutcome
from services.contribution.payments.platforms import platforms_of
from services.contribution.payments.schemas import (
    ReconciliationIn,
    ReconciliationItemOut,
    ReconciliationOut,
    RefundIn,
    RefundOut,
)

router = APIRouter(prefix="/contribution/v1", tags=["payments"], route_class=ServiceRoute)

Operator = Annotated[Principal, Depends(require("staff", roles=["operator"]))]

_REFUND_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "idempotency_key_required"},
    401: {"description": "principal_required"},
    403: {"description": "principal_kind_not_allowed, staff_role_required (a credited payment: admin only)"},
    404: {"description": "payment_not_found"},
    409: {"description": "payment_not_refundable, refund_exceeds_payment"},
    422: {"description": "validation_failed, idempotency_key_reused"},
}


@router.post(
    "/staff/payments/{payment_id:id}/refunds", status_code=201, response_model=RefundOut,
    response_model_exclude_none=True, responses=_REFUND_PROBLEMS, openapi_extra=_IDEMPOTENCY_REQUIRED,
    summary="Refund a payment (refund_pending; or, staff admin, a credited one) (Idempotency-Key required)",
)
async def refund_payment(
    request: Request, session: DbSession, clock: ClockDep, principal: Operator, body: RefundIn, payment_id: IdPath,
) -> Any:
    """Refunds what is left of the payment. Alipay answers at once (`succeeded`); WeChat Pay usually answers
    `processing`, then its notification settles the refund. A refund of a credited payment (staff admin)
    uncredits its months once it succeeds. `failed`: refused by the platform, nothing moved."""
    return await refunds.request_refund(
        session=session, platforms=platforms_of(request.app), payment_id=payment_id, principal=principal,
        reason=body.reason, clock=clock,
    )


@router.post(
    "/notify/wechatpay/refunds", status_code=204,
    summary="WeChat Pay refund notification (signed, encrypted JSON); 204 when handled",
    responses=wechat_notify_responses("refund"),
)
async def notify_wechatpay_refund(request: Request, session: DbSession, clock: ClockDep) -> Response:
    status, reason = await refunds.handle_wechat_refund_notification(
        session=session, platforms=platforms_of(request.app), headers=request.headers, body=await _body(request),
        now=clock.now(),
    )
    return wechat_answer(status, reason)


_RECON_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "principal_required"},
    403: {"description": "principal_kind_not_allowed, staff_role_required"},
    422: {"description": "validation_failed, reconciliation_date_invalid, cursor_invalid"},
}


async def _report(
    session: Any, *, day: str, channel: PaymentChannel, outcome: ReconciliationOutcome | None, limit: int,
    cursor: str | None, now: Any,
) -> ReconciliationOut:
    rec, rows, nxt = await reconciliation.report_page(
        session, channel=str(channel), day=reconciliation.parse_day(day, now),
        outcome=str(outcome) if outcome else None, limit=limit, cursor=cursor,
    )
    return ReconciliationOut(
        date=rec.bill_date, channel=PaymentChannel(rec.channel), counts=dict(rec.counts), bill_rows=rec.bill_rows,
        runs=rec.runs, **reconciliation.report_times(rec), next_cursor=nxt,
        items=[ReconciliationItemOut(
            kind=i.kind, outcome=ReconciliationOutcome(i.outcome), out_trade_no=i.out_trade_no,
            out_refund_no=i.out_refund_no, platform_no=i.platform_no, payment_id=i.payment_id, refund_id=i.refund_id,
            ours_fen=i.ours_fen, theirs_fen=i.theirs_fen, ours_status=i.ours_status, theirs_status=i.theirs_status,
            resolution=i.resolution,
        ) for i in rows],
    )


@router.post(
    "/staff/reconciliations", response_model=ReconciliationOut, response_model_exclude_none=True,
    responses={**_RECON_PROBLEMS, 502: {"description": "bill_unavailable"}},
    summary="Reconcile a day on a channel now (again: the report is replaced by the same one)",
)
async def run_reconciliation(
    request: Request, session: DbSession, clock: ClockDep, principal: Operator, body: ReconciliationIn,
) -> Any:
    """Downloads the platform's bill for the day and compares it with our payments and refunds; a paid trade
    we missed is credited after a query. Answers the counts and the first page of items."""
    day = reconciliation.parse_day(body.date, clock.now())
    # The run uses transactions of its own around its platform calls: end the request's first.
    await session.commit()
    await reconciliation.reconcile(request.app, channel=str(body.channel), day=day, actor=principal.actor_id)
    report = await _report(session, day=body.date, channel=body.channel, outcome=None, limit=DEFAULT_LIMIT,
                           cursor=None, now=clock.now())
    return report.model_dump(mode="json", exclude_none=True)


@router.get(
    "/staff/reconciliations/{date}", response_model=ReconciliationOut, response_model_exclude_none=True,
    responses={**_RECON_PROBLEMS, 404: {"description": "reconciliation_not_found"}},
    summary="A day's reconciliation on a channel: counts and items (keyset pages, by number)",
)
async def get_reconciliation(
    session: DbSession, clock: ClockDep, _staff: Operator,
    date: Annotated[str, Path(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD (Asia/Shanghai)")],
    channel: PaymentChannel, outcome: ReconciliationOutcome | None = None,
    limit: Annotated[AsciiInt, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT, cursor: CursorQuery = None,
) -> ReconciliationOut:
    return await _report(session, day=date, channel=channel, outcome=outcome, limit=limit, cursor=cursor,
                         now=clock.now())
