"""Payment certificates: the owner's (the PDF is rendered by `certificate.py`) and the public check of a code."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI, aware
from services.common.pii import mask_name
from services.common.principal import Principal
from services.contribution.declarations.crediting import get_payable_declaration
from services.contribution.declarations.reading import lines_of
from services.contribution.errors import DeclarationNotFound
from services.contribution.models import DeclarationLine
from services.contribution.payments.errors import (
    CertificateNotAvailable,
    CertificateNotFound,
    PaymentNotFound,
)
from services.contribution.payments.models import Certificate, Payment, PaymentChannel
from services.contribution.payments.schemas import CertificateCheck

_CODE_RE = re.compile(r"[A-Za-z0-9_-]{16,40}")


async def certificate_for_owner(
    *, session: AsyncSession, payment_id: str, principal: Principal, now: datetime,
) -> tuple[Certificate, list[DeclarationLine]]:
    """The certificate of a credited payment the caller may see, with the declaration's lines."""
    payment = await session.get(Payment, payment_id) if len(payment_id) <= 36 else None
    if payment is None:
        raise PaymentNotFound()
    try:
        await get_payable_declaration(
            session=session, declaration_id=payment.declaration_id, principal=principal,
            today=now.astimezone(SHANGHAI).date(),
        )
    except DeclarationNotFound:
        raise PaymentNotFound() from None
    if payment.certificate_code is None:
        raise CertificateNotAvailable(params={"status": payment.status})
    cert = await session.get(Certificate, payment.certificate_code)
    if cert is None:
        raise CertificateNotAvailable(params={"status": payment.status})
    return cert, await lines_of(session=session, declaration_id=payment.declaration_id)


async def check_certificate(*, session: AsyncSession, code: str) -> CertificateCheck:
    """What a verification code attests (masked), or 404 certificate_not_found."""
    if not _CODE_RE.fullmatch(code):
        raise CertificateNotFound(params={"valid": False})
    cert = await session.get(Certificate, code)
    if cert is None:
        raise CertificateNotFound(params={"valid": False})
    return CertificateCheck(
        valid=cert.revoked_at is None, code=cert.code, holder_name=mask_name(cert.holder_name),
        holder_id_masked=cert.holder_id_masked, category=cert.category, region_code=cert.region_code,
        months=list(cert.months), amount_fen=cert.amount_fen, channel=PaymentChannel(cert.channel),
        paid_at=aware(cert.paid_at), revoked=cert.revoked_at is not None,
    )
