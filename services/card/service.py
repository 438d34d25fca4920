"""Cards: application, issuance, activation, PIN, loss reports. The rules and transactions."""

from __future__ import annotations

import hmac
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.card import reminders
from services.card.errors import (
    ActivationLocked,
    CardAlreadyExists,
    CardNoTaken,
    CardNotFound,
    CardStateConflict,
    EnrolmentRequired,
    IdentityMismatch,
)
from services.card.events import (
    CARD_ACTIVATED,
    CARD_REPLACED,
    OUTBOX,
    CardActivated,
    CardReplaced,
)
from services.card.models import Card, ECard, Enrolment, LossReport, Person
from services.card.pins import PinHasher, initial_pin
from services.card.rules import rule_for
from services.card.schemas import (
    LIVE_STATUSES,
    ActivationIn,
    CardOut,
    CardPage,
    CardStaffView,
    CardStatus,
    ECardOut,
    IssuanceIn,
    LossKind,
    LossReportSummary,
)
from services.common.audit import record_audit
from services.common.clock import Clock, aware
from services.common.errors import ValidationFailed
from services.common.pagination import keyset_page
from services.common.pii import id_hash, mask_id_number, mask_name
from services.common.principal import ChannelKind, Principal, PrincipalKind

# ---- shaping ---------------------------------------------------------------------



def mask_card_no(value: str | None) -> str | None:
    """`J12345678` -> `J******78`."""
    if not value:
        return value
    return value[:1] + "*" * (len(value) - 3) + value[-2:]

def card_no_masked(card: Card) -> str | None:
    """`J******78` without decrypting more than needed."""
    return mask_card_no(card.card_no) if card.card_no else None


def ecard_out(ecard: ECard, card: Card) -> ECardOut:
    return ECardOut(
        id=ecard.id, card_id=card.id, platform=ecard.platform, status=CardStatus(card.status),
        card_no_masked=card_no_masked(card), issued_at=aware(ecard.issued_at),
    )


def card_out(card: Card, *, loss: LossReport | None = None, ecard: ECard | None = None) -> CardOut:
    """The card as its holder, staff and channels see it (masked)."""
    return CardOut(
        id=card.id,
        status=CardStatus(card.status),
        card_no_masked=card_no_masked(card),
        initial_pin_unchanged=card.initial_pin_unchanged,
        bank=card.bank,
        region_code=card.region_code,
        holder_name_masked=mask_name(card.holder_name) or "",
        id_number_masked=mask_id_number(card.id_number) or "",
        applied_at=aware(card.applied_at),
        issued_at=aware(card.issued_at) if card.issued_at else None,
        activated_at=aware(card.activated_at) if card.activated_at else None,
        activation_channel=card.activation_channel,
        activation_branch=card.activation_branch,
        pin_locked=card.pin_locked,
        replaces_card_id=card.replaces_card_id,
        replaced_by_card_id=card.replaced_by_card_id,
        loss_report=(
            LossReportSummary(id=loss.id, kind=LossKind(loss.kind), reported_at=aware(loss.reported_at), lifts_on=loss.lifts_on)
            if loss is not None else None
        ),
        ecard=ecard_out(ecard, card) if ecard is not None else None,
    )


def state_conflict(card: Card, *, allowed: set[CardStatus] | frozenset[CardStatus]) -> CardStateConflict:
    """409 naming the card's current state and the states the action needs."""
    return CardStateConflict(
        detail_zh=f"社保卡当前状态为 {card.status}", detail_en=f"The card is {card.status}",
        params={"current_state": card.status, "card_id": card.id, "allowed_states": sorted(allowed)},
    )


# ---- loading ------------------------------------------------------------------------


async def live_card(*, session: AsyncSession, holder_hash: str, lock: bool = False) -> Card | None:
    """The person's live card (applied, issued, active or temporarily lost), if any."""
    stmt = select(Card).where(Card.live_key == holder_hash)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def my_card(*, session: AsyncSession, principal: Principal, clock: Clock, lock: bool = False) -> Card:
    """The caller's live card with its loss state brought up to date; 404 without one."""
    card = await live_card(session=session, holder_hash=id_hash(principal.id_number or ""), lock=lock)
    if card is None:
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    return card


async def open_loss_report(*, session: AsyncSession, card: Card) -> LossReport | None:
    """The card's loss report still in force (temporary not lifted, or formal)."""
    return (
        await session.execute(
            select(LossReport)
            .where(LossReport.card_id == card.id, LossReport.lifted_at.is_(None))
            .order_by(LossReport.reported_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def refresh_loss(*, session: AsyncSession, card: Card, clock: Clock) -> None:
    """A temporary loss report lifts by itself on its day: apply it whenever the card is read."""
    if card.status != CardStatus.temporarily_lost or card.loss_lifts_on is None:
        return
    if clock.today() < card.loss_lifts_on:
        return
    report = await open_loss_report(session=session, card=card)
    lift(card, report, how="expired", clock=clock)


def lift(card: Card, report: LossReport | None, *, how: str, clock: Clock) -> None:
    """Back to active; the loss report is closed with how it was lifted."""
    card.status = CardStatus.active
    card.loss_lifts_on = None
    if report is not None:
        report.lifted_at = clock.now()
        report.lifted_how = how


async def lift_expired_losses(*, session: AsyncSession, clock: Clock, limit: int = 500) -> int:
    """Sweep: lift the temporary loss reports whose day has come; the number lifted."""
    cards = (
        await session.execute(
            select(Card)
            .where(Card.status == CardStatus.temporarily_lost, Card.loss_lifts_on <= clock.today())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).scalars().all()
    for card in cards:
        await refresh_loss(session=session, card=card, clock=clock)
    return len(cards)


async def card_view(*, session: AsyncSession, card: Card, platform: str | None = None) -> CardOut:
    """The card with its loss report in force and the e-card of one platform."""
    loss = await open_loss_report(session=session, card=card) if card.status in (
        CardStatus.temporarily_lost, CardStatus.formally_lost
    ) else None
    ecard = None
    if platform:
        ecard = (
            await session.execute(select(ECard).where(ECard.card_id == card.id, ECard.platform == platform))
        ).scalar_one_or_none()
    return card_out(card, loss=loss, ecard=ecard)


# ---- application and listing -------------------------------------------------------


async def apply_for_card(*, session: AsyncSession, principal: Principal, clock: Clock) -> CardOut:
    """申领: open a card record in `applied` for an enrolled person or a pensioner."""
    if not principal.name:
        raise ValidationFailed(
            detail_zh="实名凭证中没有姓名，无法申领", detail_en="The real-name token carries no name",
            errors=[{"field": "name", "code": "missing", "message_zh": "缺少实名姓名", "message_en": "No real name"}],
        )
    holder_hash = id_hash(principal.id_number or "")
    enrolment = (
        await session.execute(
            select(Enrolment)
            .where(Enrolment.id_hash == holder_hash, Enrolment.open.is_(True))
            .order_by(Enrolment.start_month.desc(), Enrolment.enrolment_id)
            .limit(1)
        )
    ).scalar_one_or_none()
    region = enrolment.region_code if enrolment is not None else None
    if region is None:
        person = await session.get(Person, holder_hash)
        if person is not None and person.pensioner and person.region_code:
            region = person.region_code
    if region is None:
        raise EnrolmentRequired()
    card = Card(
        id=str(uuid.uuid4()), id_hash=holder_hash, live_key=holder_hash, id_number=principal.id_number,
        holder_name=principal.name, region_code=region, status=CardStatus.applied, applied_at=clock.now(),
        activation_mismatches=0, activation_locked=False, initial_pin_unchanged=True, pin_failed_tries=0,
        pin_locked=False,
    )
    try:
        async with session.begin_nested():
            session.add(card)
            await session.flush()
    except IntegrityError:
        raise CardAlreadyExists() from None
    return card_out(card)


async def list_cards(
    *, session: AsyncSession, status: CardStatus, limit: int, cursor: str | None, clock: Clock
) -> CardPage:
    """Cards in one state, oldest application first (keyset on applied_at, id)."""
    if status == CardStatus.temporarily_lost:
        await lift_expired_losses(session=session, clock=clock)
    stmt = select(Card).where(Card.status == status)
    page = await keyset_page(session, stmt, keys=[Card.applied_at, Card.id], cursor=cursor, limit=limit)
    return CardPage(items=[card_out(c) for c in page.rows], next_cursor=page.next_cursor)


async def card_for_staff(*, session: AsyncSession, actor: Principal, card_id: str, unmasked: bool, clock: Clock) -> CardOut:
    """One card for staff or a bank; unmasked only for staff operators, and audited."""
    card = await session.get(Card, card_id)
    if card is None:
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    view = await card_view(session=session, card=card)
    if not unmasked:
        return view
    record_audit(
        session, actor=actor, action="card.read_unmasked", target_type="card", target_id=card.id, at=clock.now(),
    )
    return CardStaffView(**view.model_dump(), card_no=card.card_no, id_number=card.id_number, holder_name=card.holder_name)


async def cancel_card(*, session: AsyncSession, actor: Principal, card_id: str, reason: str, clock: Clock) -> CardOut:
    """注销: staff cancel a live card (death, emigration, a duplicate); the holder may then apply again."""
    card = (await session.execute(select(Card).where(Card.id == card_id).with_for_update())).scalar_one_or_none()
    if card is None:
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    if card.status not in LIVE_STATUSES:
        raise state_conflict(card, allowed=LIVE_STATUSES)
    report = await open_loss_report(session=session, card=card)
    if report is not None:
        report.lifted_at = clock.now()
        report.lifted_how = "cancelled"
    card.status = CardStatus.cancelled
    card.live_key = None
    card.loss_lifts_on = None
    card.ended_at = clock.now()
    record_audit(
        session, actor=actor, action="card.cancelled", target_type="card", target_id=card.id, at=clock.now(),
        reason=reason,
    )
    return card_out(card)


# ---- issuance --------------------------------------------------------------------------


async def issue_card(
    *, session: AsyncSession, actor: Principal, card_id: str, data: IssuanceIn, hasher: PinHasher, clock: Clock
) -> CardOut:
    """制卡: the card is made; record its number and bank and set the region's initial PIN."""
    card = (await session.execute(select(Card).where(Card.id == card_id).with_for_update())).scalar_one_or_none()
    if card is None:
        raise CardNotFound()
    if card.status != CardStatus.applied:
        raise state_conflict(card, allowed={CardStatus.applied})
    rule = await rule_for(session=session, region_code=card.region_code, on=clock.today())
    card.card_no = data.card_no
    card.card_no_hash = id_hash(data.card_no)
    card.bank = data.bank
    card.issued_by = actor.actor_id
    card.issued_at = clock.now()
    card.status = CardStatus.issued
    card.pin_hash = await hasher.hash(card.id, initial_pin(rule, id_number=card.id_number))
    card.initial_pin_unchanged = True
    card.pin_failed_tries = 0
    card.pin_locked = False
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise CardNoTaken() from None
    record_audit(
        session, actor=actor, action="card.issued", target_type="card", target_id=card.id, at=clock.now(),
        details={"card_no_masked": card_no_masked(card), "bank": card.bank},
    )
    await reminders.card_made(session, card, clock.now())
    return card_out(card)


# ---- activation ------------------------------------------------------------------------


def same_text(a: str, b: str) -> bool:
    """Constant-time comparison of two strings."""
    return hmac.compare_digest(a.encode(), b.encode())


async def activate_card(*, session: AsyncSession, actor: Principal, data: ActivationIn, clock: Clock) -> CardOut:
    """激活: card number, id number and name must all match the card; mismatches are counted."""
    card = (
        await session.execute(select(Card).where(Card.card_no_hash == id_hash(data.card_no)).with_for_update())
    ).scalar_one_or_none()
    if card is None:
        # Existence of a card number is not revealed: the same refusal, nothing to count.
        raise IdentityMismatch()
    at_window = actor.kind == PrincipalKind.channel and actor.channel_kind == ChannelKind.window
    if card.activation_locked and not at_window:
        raise ActivationLocked(params={"card_no_masked": card_no_masked(card)})
    matches = same_text(card.id_hash, id_hash(data.id_number)) and same_text(card.holder_name, data.name)
    if actor.kind == PrincipalKind.citizen:
        matches = matches and same_text(card.id_hash, id_hash(actor.id_number or ""))
    if not matches:
        rule = await rule_for(session=session, region_code=card.region_code, on=clock.today())
        card.activation_mismatches += 1
        left = max(rule.activation_max_mismatches - card.activation_mismatches, 0)
        if left == 0 and not card.activation_locked:
            card.activation_locked = True
            record_audit(
                session, actor=actor, action="card.activation_locked", target_type="card", target_id=card.id,
                at=clock.now(), reason="identity mismatches",
                details={"mismatches": card.activation_mismatches, "card_no_masked": card_no_masked(card)},
            )
        await session.flush()
        if card.activation_locked and not at_window:
            raise ActivationLocked(params={"card_no_masked": card_no_masked(card)})
        raise IdentityMismatch(params={"mismatches_left": left})
    await refresh_loss(session=session, card=card, clock=clock)
    if card.status != CardStatus.issued:
        raise state_conflict(card, allowed={CardStatus.issued})
    now = clock.now()
    channel = str(actor.channel_kind) if actor.kind == PrincipalKind.channel else "online"
    card.status = CardStatus.active
    card.activated_at = now
    card.activation_channel = channel
    card.activation_branch = actor.branch_id if actor.kind == PrincipalKind.channel else None
    card.activation_mismatches = 0
    card.activation_locked = False
    OUTBOX.emit(
        session, type=CARD_ACTIVATED, subject=card.id, time=now,
        data=CardActivated(
            card_id=card.id, id_hash=card.id_hash, region_code=card.region_code,
            card_no_masked=card_no_masked(card) or "", channel=channel, branch_id=card.activation_branch,
            activated_at=now, replaces_card_id=card.replaces_card_id,
        ),
    )
    if card.replaces_card_id:
        old = (
            await session.execute(select(Card).where(Card.id == card.replaces_card_id).with_for_update())
        ).scalar_one()
        old.status = CardStatus.replaced
        old.replaced_by_card_id = card.id
        OUTBOX.emit(
            session, type=CARD_REPLACED, subject=old.id, time=now,
            data=CardReplaced(card_id=old.id, id_hash=old.id_hash, replacement_card_id=card.id, replaced_at=now),
        )
    record_audit(
        session, actor=actor, action="card.activated", target_type="card", target_id=card.id, at=now,
        details={"channel": channel, "branch_id": card.activation_branch},
    )
    return card_out(card)


