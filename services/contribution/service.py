"""Declarations: the citizen's own, an agency's for a person; confirming, cancelling, expiring, paying.

申报: a declaration of contributions due. Employer declarations and staff
assessments live in `employers.py`; the payment channels (`payments/`) call
`get_payable_declaration` and `mark_declaration_paid`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock, aware
from services.common.enums import Category
from services.common.identifiers import month_index
from services.common.pagination import CursorInvalid, decode_cursor, encode_cursor
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind
from services.contribution.enums import LinePayer, PaidBy
from services.contribution.errors import (
    CategoryNotAllowed,
    DeclarationAlreadyPaid,
    DeclarationNotFound,
    DeclarationStateConflict,
    MonthAlreadyDeclared,
    NotEnrolled,
    PaymentInProgress,
)
from services.contribution.events import (
    DECLARATION_EXPIRED,
    DECLARATION_PAID,
    OUTBOX,
    DeclarationExpired,
    DeclarationPaid,
)
from services.contribution.models import (
    AgencyAuthorization,
    ContributionRecord,
    Declaration,
    DeclarationLine,
    DeclarationSource,
    DeclarationStatus,
    DeclaredMonth,
    KnownEnrolment,
)
from services.contribution.pricing import Line, round_fen
from services.contribution.quotes import Priced, line_out, price
from services.contribution.schemas import (
    DeclarationIn,
    DeclarationListItem,
    DeclarationOut,
    LateFeeOut,
    PaymentSummary,
    QuoteIn,
)

LIVE = (DeclarationStatus.draft, DeclarationStatus.awaiting_payment)
PERSON_SOURCES = (DeclarationSource.citizen, DeclarationSource.agency)
EMPLOYER_SOURCES = (DeclarationSource.employer, DeclarationSource.assessment)

# ---- payments shown on a declaration ---------------------------------------------------

PaymentLoader = Callable[[AsyncSession, list[str]], Awaitable[dict[str, list[PaymentSummary]]]]
_payment_loaders: list[PaymentLoader] = []


def register_payment_loader(loader: PaymentLoader) -> None:
    """Let the payment channels list a declaration's payments (`payments` in the answer)."""
    if loader not in _payment_loaders:
        _payment_loaders.append(loader)


async def payments_of(*, session: AsyncSession, declaration_ids: list[str]) -> dict[str, list[PaymentSummary]]:
    """Each declaration's payments, from every registered loader."""
    out: dict[str, list[PaymentSummary]] = {d: [] for d in declaration_ids}
    for loader in _payment_loaders:
        for decl_id, items in (await loader(session, declaration_ids)).items():
            out.setdefault(decl_id, []).extend(items)
    return out


# ---- reading ------------------------------------------------------------------------


async def lines_of(*, session: AsyncSession, declaration_id: str) -> list[DeclarationLine]:
    """A declaration's lines in order."""
    stmt = select(DeclarationLine).where(DeclarationLine.declaration_id == declaration_id).order_by(DeclarationLine.line_no)
    return list((await session.execute(stmt)).scalars().all())


async def declaration_view(*, session: AsyncSession, declaration: Declaration) -> DeclarationOut:
    """The public shape of a declaration, with its lines and payments."""
    lines = await lines_of(session=session, declaration_id=declaration.id)
    payments = (await payments_of(session=session, declaration_ids=[declaration.id]))[declaration.id]
    late = None
    if declaration.deadline is not None and declaration.source == DeclarationSource.employer:
        late = LateFeeOut(
            deadline=declaration.deadline, days_late=declaration.late_fee_days,
            arrears_fen=declaration.late_fee_arrears_fen, rate_per_10000_per_day=_late_rate(declaration),
            amount_fen=declaration.late_fee_fen,
        )
    return DeclarationOut(
        id=declaration.id, status=declaration.status, source=declaration.source, category=Category(declaration.category),
        region_code=declaration.region_code, months=list(declaration.months), year=declaration.year,
        base_fen=declaration.base_fen, grade_fen=declaration.grade_fen, credit_code=declaration.credit_code,
        agency_credit_code=declaration.agency_credit_code,
        lines=[
            line_out(Line(month=x.month, insurance=x.insurance, payer=x.payer, base_fen=x.base_fen, rate_bp=x.rate_bp,  # type: ignore[arg-type]
                          amount_fen=x.amount_fen, person_id=x.person_id))
            for x in lines
        ],
        total_fen=declaration.total_fen, subsidy_fen=declaration.subsidy_fen, late_fee=late,
        created_at=aware(declaration.created_at),
        confirmed_at=aware(declaration.confirmed_at) if declaration.confirmed_at else None,
        expires_at=aware(declaration.expires_at) if declaration.expires_at else None,
        paid_at=aware(declaration.paid_at) if declaration.paid_at else None,
        paid_by=PaidBy(declaration.paid_by) if declaration.paid_by else None,
        payments=payments,
    )


def _late_rate(declaration: Declaration) -> int:
    """The late-fee rate (per 10,000 a day), recovered from the stored amounts in integers."""
    arrears, days = declaration.late_fee_arrears_fen, declaration.late_fee_days
    if not arrears or not days or not declaration.late_fee_fen:
        return 0
    return round_fen(declaration.late_fee_fen * 10000, arrears * days, "fen_half_up")


def list_item(declaration: Declaration) -> DeclarationListItem:
    return DeclarationListItem(
        id=declaration.id, status=declaration.status, source=declaration.source,
        category=Category(declaration.category), region_code=declaration.region_code,
        months=list(declaration.months), year=declaration.year, total_fen=declaration.total_fen,
        created_at=aware(declaration.created_at),
    )


async def get_person_declaration(*, session: AsyncSession, declaration_id: str, principal: Principal) -> Declaration:
    """The citizen's own declaration (made by them or by an agency for them); 404 for anyone else's."""
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if (
        decl is None
        or decl.source not in PERSON_SOURCES
        or principal.id_number is None
        or decl.person_key != id_hash(principal.id_number)
    ):
        raise DeclarationNotFound()
    return decl


async def list_person_declarations(
    *, session: AsyncSession, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """The citizen's declarations, newest first (keyset pages)."""
    assert principal.id_number
    stmt = select(Declaration).where(
        Declaration.person_key == id_hash(principal.id_number), Declaration.source.in_(PERSON_SOURCES)
    )
    return await page_of_declarations(session=session, stmt=stmt, limit=limit, cursor=cursor)


async def list_employer_declarations(
    *, session: AsyncSession, credit_code: str, limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """A unit's declarations and assessments, newest first (keyset pages)."""
    stmt = select(Declaration).where(Declaration.credit_code == credit_code, Declaration.source.in_(EMPLOYER_SOURCES))
    return await page_of_declarations(session=session, stmt=stmt, limit=limit, cursor=cursor)


async def page_of_declarations(
    *, session: AsyncSession, stmt: Select[Any], limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """One page of declarations by (created_at, id) descending, after an opaque cursor."""
    key = decode_cursor(cursor)
    if key is not None:
        try:
            at, last_id = aware(datetime.fromisoformat(str(key[0]))), str(key[1])
        except (ValueError, IndexError):
            raise CursorInvalid() from None
        stmt = stmt.where(or_(Declaration.created_at < at, and_(Declaration.created_at == at, Declaration.id < last_id)))
    rows = list(
        (await session.execute(stmt.order_by(Declaration.created_at.desc(), Declaration.id.desc()).limit(limit + 1)))
        .scalars().all()
    )
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor([aware(rows[-1].created_at).isoformat(), rows[-1].id])
    return rows, nxt


# ---- creating -----------------------------------------------------------------------


async def _check_enrolled(*, session: AsyncSession, person_key: str, priced: Priced) -> str | None:
    """An enrolment of the category in the region must cover every month; its person id."""
    rows = (
        await session.execute(
            select(KnownEnrolment).where(KnownEnrolment.id_hash == person_key, KnownEnrolment.category == priced.category)
        )
    ).scalars().all()
    if priced.category == Category.resident:
        assert priced.year is not None
        needed = [f"{priced.year:04d}-01", f"{priced.year:04d}-12"]
    else:
        needed = priced.months
    region_matches = [
        e for e in rows
        if priced.region_code == e.region_code
        or priced.region_code in _parents(e.region_code)
        or e.region_code in _parents(priced.region_code)
    ]

    def covered(first: str, last: str) -> bool:
        return any(
            month_index(e.start_month) <= month_index(last)
            and (e.end_month is None or month_index(e.end_month) >= month_index(first))
            for e in region_matches
        )

    if priced.category == Category.resident:
        # A resident's year is declared when the enrolment is open at some point in it.
        uncovered = [] if covered(needed[0], needed[1]) else [str(priced.year)]
    else:
        uncovered = [m for m in needed if not covered(m, m)]
    if uncovered or not region_matches:
        raise NotEnrolled(
            detail_zh="请先办理该类别、该地区的参保登记", detail_en="Enrol in this category and region first",
            params={"category": str(priced.category), "region_code": priced.region_code,
                    "months": uncovered or needed},
        )
    return region_matches[0].person_id


def _parents(region_code: str) -> tuple[str, str]:
    return region_code[:4] + "00", region_code[:2] + "0000"


async def claim_periods(*, session: AsyncSession, declaration_id: str, claims: list[tuple[str, str, str]]) -> None:
    """Hold (person, period, insurance) for a declaration; 409 month_already_declared when one is taken.

    The database's unique constraint decides, so two concurrent declarations cannot both win.
    """
    rows = [DeclaredMonth(declaration_id=declaration_id, person_key=p, period=m, insurance=i) for p, m, i in claims]
    try:
        async with session.begin_nested():
            session.add_all(rows)
            await session.flush()
    except IntegrityError:
        keys = {(p, m) for p, m, _ in claims}
        taken = (
            await session.execute(
                select(DeclaredMonth.person_key, DeclaredMonth.period).where(
                    DeclaredMonth.person_key.in_({p for p, _ in keys}), DeclaredMonth.period.in_({m for _, m in keys})
                )
            )
        ).all()
        months = sorted({m for p, m in taken if (p, m) in keys})
        raise MonthAlreadyDeclared(
            detail_zh=f"以下月份已缴费或已在其他申报中：{'、'.join(months)}",
            detail_en=f"Already paid or held by another declaration: {', '.join(months)}",
            params={"months": months},
        ) from None


async def release_periods(*, session: AsyncSession, declaration_id: str) -> None:
    """Free the months of a cancelled or expired declaration."""
    await session.execute(delete(DeclaredMonth).where(DeclaredMonth.declaration_id == declaration_id))


async def save_declaration(
    *, session: AsyncSession, declaration: Declaration, lines: list[Line], claims: list[tuple[str, str, str]]
) -> Declaration:
    """Insert a declaration, its lines and its claimed months in the current transaction."""
    session.add(declaration)
    await session.flush()
    session.add_all([
        DeclarationLine(
            declaration_id=declaration.id, line_no=n, person_key=x.person_key, person_id=x.person_id, month=x.month,
            insurance=str(x.insurance), payer=str(x.payer), base_fen=x.base_fen, rate_bp=x.rate_bp,
            amount_fen=x.amount_fen,
        )
        for n, x in enumerate(lines, start=1)
    ])
    await session.flush()
    await claim_periods(session=session, declaration_id=declaration.id, claims=claims)
    return declaration


def _person_claims(person_key: str, priced: Priced) -> list[tuple[str, str, str]]:
    if priced.category == Category.resident:
        return [(person_key, str(priced.year), "pension")]
    seen: dict[tuple[str, str, str], None] = {}
    for x in priced.lines:
        if x.payer != LinePayer.government:
            seen[(person_key, x.month, str(x.insurance))] = None
    return list(seen)


async def create_person_declaration(
    *, session: AsyncSession, body: QuoteIn, person_key: str, actor: Principal, now: datetime, today: date,
    current_month: str, ttl: timedelta, agency_credit_code: str | None = None,
) -> Declaration:
    """A flexible or resident declaration for a person (draft when the person makes it, awaiting payment
    when an authorized agency submits it)."""
    if body.category not in (Category.flexible, Category.resident):
        raise CategoryNotAllowed(
            detail_zh="职工由单位申报缴费", detail_en="Employees are declared by their employer",
            params={"allowed": ["flexible", "resident"]},
        )
    priced = await price(session=session, body=body, today=today, current_month=current_month)
    person_id = await _check_enrolled(session=session, person_key=person_key, priced=priced)
    by_agency = agency_credit_code is not None
    decl = Declaration(
        id=str(uuid.uuid4()),
        source=DeclarationSource.agency if by_agency else DeclarationSource.citizen,
        status=DeclarationStatus.awaiting_payment if by_agency else DeclarationStatus.draft,
        category=str(priced.category), region_code=priced.region_code, person_key=person_key, person_id=person_id,
        agency_credit_code=agency_credit_code, months=priced.months, year=priced.year, base_fen=body.base_fen,
        grade_fen=body.grade_fen, total_fen=priced.total_fen, subsidy_fen=priced.subsidy_fen,
        created_by=actor.actor_id, created_at=now, confirmed_at=now if by_agency else None, expires_at=now + ttl,
    )
    lines = [Line(**{**x.__dict__, "person_key": person_key, "person_id": person_id}) for x in priced.lines]
    return await save_declaration(session=session, declaration=decl, lines=lines,
                                  claims=_person_claims(person_key, priced))


async def create_citizen_declaration(
    *, session: AsyncSession, body: DeclarationIn, principal: Principal, now: datetime, today: date,
    current_month: str, ttl: timedelta,
) -> Declaration:
    """添加申报: the citizen's own declaration, as a draft to confirm."""
    assert principal.id_number
    return await create_person_declaration(
        session=session, body=body, person_key=id_hash(principal.id_number), actor=principal, now=now, today=today,
        current_month=current_month, ttl=ttl,
    )


async def confirm_declaration(*, session: AsyncSession, declaration: Declaration, now: datetime, ttl: timedelta) -> Declaration:
    """Confirm a draft: it awaits payment (again a no-op once confirmed)."""
    if declaration.status == DeclarationStatus.awaiting_payment:
        return declaration
    if declaration.status != DeclarationStatus.draft or (
        declaration.expires_at is not None and aware(declaration.expires_at) <= now
    ):
        raise DeclarationStateConflict(
            detail_zh="只有草稿状态的申报可以确认", detail_en="Only a draft can be confirmed",
            params={"status": declaration.status},
        )
    declaration.status = DeclarationStatus.awaiting_payment
    declaration.confirmed_at = now
    declaration.expires_at = now + ttl
    await session.flush()
    return declaration


async def cancel_declaration(*, session: AsyncSession, declaration: Declaration, now: datetime) -> Declaration:
    """Cancel an unpaid declaration and free its months (a no-op once cancelled)."""
    if declaration.status == DeclarationStatus.cancelled:
        return declaration
    if declaration.status not in LIVE or declaration.source == DeclarationSource.assessment:
        raise DeclarationStateConflict(
            detail_zh="该申报不能撤销", detail_en="This declaration cannot be cancelled",
            params={"status": declaration.status},
        )
    payments = (await payments_of(session=session, declaration_ids=[declaration.id]))[declaration.id]
    if any(p.status == "open" for p in payments):
        # Cancelling now would let the platform take money for months no longer held.
        raise PaymentInProgress(params={"payment_ids": [p.id for p in payments if p.status == "open"]})
    declaration.status = DeclarationStatus.cancelled
    declaration.closed_at = now
    await release_periods(session=session, declaration_id=declaration.id)
    await session.flush()
    return declaration


async def expire_due_declarations(*, session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Expire unpaid declarations past their time and free their months; how many expired."""
    ids = list(
        (
            await session.execute(
                select(Declaration.id)
                .where(Declaration.status.in_(LIVE), Declaration.expires_at.is_not(None), Declaration.expires_at <= now)
                .order_by(Declaration.expires_at)
                .limit(limit)
            )
        ).scalars().all()
    )
    if not ids:
        return 0
    # Only the rows this statement moved free their months: one paid meanwhile keeps them.
    moved = (
        await session.execute(
            update(Declaration)
            .where(Declaration.id.in_(ids), Declaration.status.in_(LIVE))
            .values(status=DeclarationStatus.expired, closed_at=now)
            .returning(
                Declaration.id, Declaration.source, Declaration.category, Declaration.region_code, Declaration.months,
                Declaration.year, Declaration.total_fen, Declaration.person_key, Declaration.credit_code,
                Declaration.agency_credit_code,
            )
        )
    ).all()
    expired = [row.id for row in moved]
    if expired:
        await session.execute(delete(DeclaredMonth).where(DeclaredMonth.declaration_id.in_(expired)))
    for row in moved:
        OUTBOX.emit(
            session, type=DECLARATION_EXPIRED, subject=row.id, time=now,
            data=DeclarationExpired(
                declaration_id=row.id, source=row.source, category=Category(row.category), region_code=row.region_code,
                months=list(row.months or []), year=row.year, total_fen=row.total_fen, expired_at=now,
                person_id_hash=row.person_key if row.source in PERSON_SOURCES else None,
                credit_code=row.credit_code, agency_credit_code=row.agency_credit_code,
            ),
        )
    return len(expired)


# ---- paying (called by the payment channels) ---------------------------------------------


async def authorization_in_force(
    *, session: AsyncSession, agency_credit_code: str, person_key: str, today: date
) -> AgencyAuthorization | None:
    """The person's authorization of the agency that is in force today, if any."""
    stmt = select(AgencyAuthorization).where(
        AgencyAuthorization.agency_credit_code == agency_credit_code,
        AgencyAuthorization.person_key == person_key,
        AgencyAuthorization.revoked_at.is_(None),
        AgencyAuthorization.valid_until >= today,
    ).limit(1)
    return (await session.execute(stmt)).scalars().first()


async def get_payable_declaration(
    *, session: AsyncSession, declaration_id: str, principal: Principal, today: date | None = None
) -> Declaration:
    """The declaration if the caller may pay it (the person, the employer, an authorized agency); else 404.

    The status is not checked here: the caller decides what each status allows.
    """
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if decl is None:
        raise DeclarationNotFound()
    kind = principal.kind
    if kind == PrincipalKind.citizen and principal.id_number and decl.source in PERSON_SOURCES:
        if decl.person_key == id_hash(principal.id_number):
            return decl
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
