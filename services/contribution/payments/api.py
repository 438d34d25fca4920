"""Payment routes: open a payment, platform notifications, certificates (HTTP only)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock, ClockDep, aware
from services.common.db import DbSession
from services.common.events import ReadModelRoute
from services.common.identifiers import AsciiInt
from services.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorQuery
from services.common.paths import IdPath
from services.common.principal import Principal, require
from services.common.routing import idempotency_key_required
from services.contribution.payments import certificates, notifications, opening, reads
from services.contribution.payments.certificate import CertificateData, CertificateLine, render_certificate
from services.contribution.payments.models import PaymentStatus
from services.contribution.payments.notifications import MAX_RAW
from services.contribution.payments.platforms import platforms_of
from services.contribution.payments.schemas import CertificateCheck, PaymentIn, PaymentOut, PaymentPage

router = APIRouter(prefix="/contribution/v1", tags=["payments"], route_class=ReadModelRoute)

Payer = Annotated[Principal, Depends(require("citizen", "employer", "agency", min_level=2))]
CitizenPayer = Annotated[Principal, Depends(require("citizen", min_level=2))]
Owner = Annotated[Principal, Depends(require("citizen", "employer", "agency"))]
Operator = Annotated[Principal, Depends(require("staff", roles=["operator"]))]
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "idempotency_key_required"},
    401: {"description": "principal_required"},
    403: {"description": "principal_kind_not_allowed, realname_level_too_low"},
    404: {"description": "declaration_not_found"},
    409: {"description": "declaration_state_conflict, declaration_already_paid, payment_already_open"},
    422: {"description": "validation_failed, channel_not_available, nothing_to_pay, idempotency_key_reused"},
    502: {"description": "payment_platform_unavailable"},
}

# WeChat Pay reads its own failure shape, not a problem document.
_WECHAT_FAIL_SCHEMA = {
    "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code"],
}


def _wechat_fail(reason: str) -> dict[str, Any]:
    """WeChat Pay's own answer format (not a problem document), with the refusal's reason as the message."""
    return {"application/json": {"schema": _WECHAT_FAIL_SCHEMA, "example": {"code": "FAIL", "message": reason}}}


def wechat_notify_responses(unknown: str) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a WeChat Pay notification route; `unknown` names what it may not find."""
    return {400: {"description": '{"code": "FAIL", "message": ...}: not ours, amount mismatch, not decrypted',
                  "content": _wechat_fail("amount_mismatch")},
            401: {"description": "signature not verified", "content": _wechat_fail("signature")},
            404: {"description": f"unknown {unknown}", "content": _wechat_fail(f"unknown_{unknown}")}}


def wechat_answer(status: int, reason: str | None) -> Response:
    """What WeChat Pay is answered: 204 when handled, else its own failure shape."""
    if status == 204:
        return Response(status_code=204)
    return JSONResponse({"code": "FAIL", "message": reason or "failed"}, status_code=status)




async def _body(request: Request) -> bytes:
    """The request body, at most MAX_RAW + 1 bytes read (larger ones are refused by the handlers)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RAW:
            break
    return b"".join(chunks)


# A missing key is 400 idempotency_key_required (ServiceRoute reads this), not a 422.
_IDEMPOTENCY_REQUIRED = idempotency_key_required(
    "the client's key for this payment attempt; a retry with the same key gets the same answer"
)


async def _open(
    request: Request, session: AsyncSession, clock: Clock, principal: Principal, body: PaymentIn, declaration_id: str,
) -> dict[str, Any]:
    return await opening.open_payment(
        session=session, platforms=platforms_of(request.app), declaration_id=declaration_id, principal=principal,
        channel=body.channel, clock=clock,
    )


@router.post(
    "/me/declarations/{declaration_id:id}/payments", status_code=201, response_model=PaymentOut,
    response_model_exclude_none=True, responses=_PROBLEMS,
    summary="Open a payment of my declaration (Idempotency-Key required)",
    openapi_extra=_IDEMPOTENCY_REQUIRED,
)
async def open_my_payment(
    request: Request, session: DbSession, clock: ClockDep, principal: CitizenPayer, body: PaymentIn,
    declaration_id: IdPath,
) -> Any:
    """Opens at most one payment per declaration for its total; answers Alipay's `trade_no` or WeChat Pay's
    `wx.requestPayment` parameters. An open payment on the same channel is answered again."""
    return await _open(request, session, clock, principal, body, declaration_id)


@router.post(
    "/declarations/{declaration_id:id}/payments", status_code=201, response_model=PaymentOut,
    response_model_exclude_none=True, responses=_PROBLEMS, deprecated=True,
    summary="Open a payment of a declaration (Idempotency-Key required)",
    openapi_extra=_IDEMPOTENCY_REQUIRED,
)
async def open_payment(
    request: Request, session: DbSession, clock: ClockDep, principal: Payer, body: PaymentIn, declaration_id: IdPath,
) -> Any:
    """The same as `POST /contribution/v1/me/declarations/{declaration_id}/payments`, which citizens' mini-programs
    should call; this path stays served (employers and agencies pay their declarations here)."""
    return await _open(request, session, clock, principal, body, declaration_id)


@router.post(
    "/notify/alipay", response_class=PlainTextResponse,
    summary="Alipay trade notification (signed form); answers `success` when handled",
    responses={200: {"description": "handled", "content": {"text/plain": {"example": "success"}}},
               400: {"description": "`fail`: not verified or not acceptable; Alipay resends",
                     "content": {"text/plain": {"schema": {"type": "string", "enum": ["fail"]}, "example": "fail"}}}},
)
async def notify_alipay(request: Request, session: DbSession, clock: ClockDep) -> Response:
    handled = await notifications.handle_alipay_notification(
        session=session, platforms=platforms_of(request.app), body=await _body(request), now=clock.now(),
    )
    return PlainTextResponse("success") if handled else PlainTextResponse("fail", status_code=400)


@router.post(
    "/notify/wechatpay", status_code=204,
    summary="WeChat Pay notification (signed, encrypted JSON); 204 when handled",
    responses=wechat_notify_responses("order"),
)
async def notify_wechatpay(request: Request, session: DbSession, clock: ClockDep) -> Response:
    status, reason = await notifications.handle_wechat_notification(
        session=session, platforms=platforms_of(request.app), headers=request.headers, body=await _body(request),
        now=clock.now(),
    )
    return wechat_answer(status, reason)


@router.get(
    "/me/payments/{payment_id:id}/certificate", response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the certificate (PDF)"},
               404: {"description": "payment_not_found"}, 409: {"description": "certificate_not_available"}},
    summary="Download the payment certificate (PDF in Chinese, with a verification code)",
)
async def certificate_pdf(
    request: Request, session: DbSession, clock: ClockDep, principal: Owner, payment_id: IdPath,
) -> Response:
    app = request.app
    cert, lines = await certificates.certificate_for_owner(
        session=session, payment_id=payment_id, principal=principal, now=clock.now(),
    )
    platforms = platforms_of(app)
    data = CertificateData(
        code=cert.code, verify_url=platforms.settings.certificate_verify_url + cert.code,
        holder_name=cert.holder_name, holder_id_masked=cert.holder_id_masked, category=cert.category,
        region_code=cert.region_code, months=list(cert.months),
        lines=[CertificateLine(month=x.month, insurance=x.insurance, payer=x.payer, base_fen=x.base_fen,
                               rate_bp=x.rate_bp, amount_fen=x.amount_fen) for x in lines if x.payer != "government"],
        amount_fen=cert.amount_fen, channel=cert.channel, platform_trade_no=cert.platform_trade_no,
        paid_at=aware(cert.paid_at), issued_at=aware(cert.issued_at),
    )
    pdf = await asyncio.to_thread(render_certificate, data, font_file=platforms.keys.certificate_font)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="certificate-{cert.code}.pdf"',
        "Cache-Control": "private, no-store",
    })


@router.get(
    "/payments", response_model=PaymentPage,
    responses={401: {"description": "principal_required"}, 403: {"description": "staff_role_required"}},
    summary="Payments newest first, by status or flagged for staff (refunds to make, alerts)",
)
async def list_payments(
    session: DbSession, _staff: Operator, status: PaymentStatus | None = None, flagged: bool = False,
    limit: Annotated[AsciiInt, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> PaymentPage:
    rows, nxt = await reads.list_payments(session=session, status=status, flagged=flagged, limit=limit, cursor=cursor)
    return PaymentPage(items=[reads.staff_view(p) for p in rows], next_cursor=nxt)


@router.get(
    "/certificates/{code}", response_model=CertificateCheck,
    responses={404: {"description": "certificate_not_found (valid: false)"}},
    summary="Verify a payment certificate by its code (public)",
)
async def check_certificate(
    session: DbSession, code: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the verification code printed on the certificate")],
) -> CertificateCheck:
    return await certificates.check_certificate(session=session, code=code)
