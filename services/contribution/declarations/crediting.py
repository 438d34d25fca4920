"""Paying declarations (called by the payment channels in `payments/`): who may pay one, and crediting it."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock
from services.common.enums import Category
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind, RealnameLevelTooLow
from services.contribution import family
from services.contribution.agencies.service import authorization_in_force
from services.contribution.declarations.claims import claim_periods
from services.contribution.declarations.reading import EMPLOYER_SOURCES, PERSON_SOURCES, lines_of
from services.contribution.enums import LinePayer, PaidBy
from services.contribution.errors import (
    DeclarationAlreadyPaid,
    DeclarationNotFound,
    DeclarationNotFoundUnlessBound,
    DeclarationStateConflict,
)
from services.contribution.events import DECLARATION_PAID, OUTBOX, DeclarationPaid
from services.contribution.models import ContributionRecord, Declaration, DeclarationSource, DeclarationStatus


async def get_payable_declaration(
    *, session: AsyncSession, declaration_id: str, principal: Principal, today: date | None = None
) -> Declaration:
    """The declaration if the caller may pay it (the person, a relative bound to them, the employer, an authorized
    agency); else 404.

    The status is not checked here: the caller decides what each status allows.
    """
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if decl is None:
        raise DeclarationNotFound()
    kind = principal.kind
    if kind == PrincipalKind.citizen and principal.id_number and decl.source in PERSON_SOURCES:
        if decl.person_key == id_hash(principal.id_number):
            return decl
        if await family.may_pay_for_relative(session, principal, decl):
            # A bound relative's declaration (paid_by family): at the level the family service itself asks for.
            if (principal.realname_level or 0) < family.FAMILY_MIN_LEVEL:
                raise RealnameLevelTooLow(params={"required_level": family.FAMILY_MIN_LEVEL,
                                                  "level": principal.realname_level or 0})
            return decl
        raise DeclarationNotFoundUnlessBound()
    elif kind == PrincipalKind.employer and decl.source in EMPLOYER_SOURCES:
        if principal.credit_code and decl.credit_code == principal.credit_code:
            return decl
    elif kind == PrincipalKind.agency and decl.source in PERSON_SOURCES and decl.person_key and principal.credit_code:
        on = today or Clock().today()
        if await authorization_in_force(session=session, agency_credit_code=principal.credit_code,
                                        person_key=decl.person_key, today=on):
            return decl
    raise DeclarationNotFound()


def _paid_by(decl: Declaration) -> PaidBy:
    if decl.source in EMPLOYER_SOURCES:
        return PaidBy.employer
    return PaidBy.agency if decl.source == DeclarationSource.agency else PaidBy.self


async def mark_declaration_paid(
    *, session: AsyncSession, declaration_id: str, payment_id: str, channel: str, paid_at: datetime,
    paid_by: PaidBy | str | None = None,
) -> Declaration:
    """Credit a payment: the declaration is paid, its months are recorded, and the event is emitted.

    Idempotent for the same payment. An expired declaration is still credited (the money was taken)
    when its months can be claimed again; when another declaration holds one of them meanwhile, it is
    409 `month_already_declared` and nothing is credited (the payment is flagged for a refund, never
    counted twice for one month). A declaration already paid by another payment is 409.
    """
    decl = (
        await session.execute(select(Declaration).where(Declaration.id == declaration_id).with_for_update())
    ).scalar_one_or_none()
    if decl is None:
        raise DeclarationNotFound()
    if decl.status == DeclarationStatus.paid:
        if decl.paid_payment_id == payment_id:
            return decl
        raise DeclarationAlreadyPaid(params={"payment_id": decl.paid_payment_id})
    if decl.status not in (DeclarationStatus.awaiting_payment, DeclarationStatus.expired):
        raise DeclarationStateConflict(params={"status": decl.status})
    lines = await lines_of(session=session, declaration_id=decl.id)
    if decl.status == DeclarationStatus.expired:
        claims = sorted({(x.person_key or decl.person_key or "", _period(decl, x.month), x.insurance) for x in lines
                         if x.payer != LinePayer.government})
        await claim_periods(session=session, declaration_id=decl.id, claims=claims)
    who = PaidBy(paid_by) if paid_by else _paid_by(decl)
    decl.status = DeclarationStatus.paid
    decl.paid_at = paid_at
    decl.paid_payment_id = payment_id
    decl.paid_channel = channel
    decl.paid_by = str(who)
    records: dict[tuple[str, str, str, str], ContributionRecord] = {}
    for x in lines:
        if x.payer == LinePayer.government or not (x.person_key or decl.person_key):
            continue
        person_key, period = x.person_key or decl.person_key or "", _period(decl, x.month)
        key = (person_key, period, x.insurance, x.payer)
        if key in records:
            # A fixed levy line (rate 0) joins its payer's premium for that month and insurance.
            records[key].amount_fen += x.amount_fen
            continue
        records[key] = ContributionRecord(
            person_key=person_key, person_id=x.person_id or decl.person_id, period=period, category=decl.category,
            insurance=x.insurance, payer=x.payer, base_fen=x.base_fen, amount_fen=x.amount_fen, paid_by=str(who),
            credit_code=decl.credit_code, declaration_id=decl.id, payment_id=payment_id, paid_at=paid_at,
        )
    session.add_all(list(records.values()))
    await session.flush()
    OUTBOX.emit(
        session, type=DECLARATION_PAID, subject=decl.id, time=paid_at,
        data=DeclarationPaid(
            declaration_id=decl.id, payment_id=payment_id, category=Category(decl.category),
            region_code=decl.region_code, months=list(decl.months), total_fen=decl.total_fen, paid_by=who,
            paid_at=paid_at, channel=channel,
            person_id_hash=decl.person_key if decl.source in PERSON_SOURCES else None,
            credit_code=decl.credit_code,
        ),
    )
    return decl


def _period(decl: Declaration, month: str) -> str:
    return str(decl.year) if decl.category == Category.resident and decl.year else month
