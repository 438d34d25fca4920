"""亲情服务: a citizen binds relatives, shows their e-card, reads their card (masked).

A citizen at real-name level 3 (the holder) adds a relative by id number, name and
relation. An adult relative (16 or older on today's date in Shanghai, by the birth
date in the id number) receives an invitation addressed to their id number and
accepts it with their own token before anything is shared; a child under 16 is
bound at once by a parent (relation `child`), and that is audited. A holder has at
most eight bindings that are pending or active. Either side ends a binding at any
time, effective at once. Activation and ending are published (`card.family.*`) so
that other services (contribution: paying a relative's declarations) keep their own
view of who may act for whom.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.card.ecard import QrSigner, platform_of, sign_qrcode
from services.card.errors import (
    CardNotFound,
    FamilyBindingExists,
    FamilyBindingNotActive,
    FamilyBindingNotFound,
    FamilyInvitationNotFound,
    FamilyInvitationNotPending,
    FamilyLimitReached,
    FamilyMinorRelation,
    FamilySelfBinding,
)
from services.card.events import FAMILY_BOUND, FAMILY_UNBOUND, OUTBOX, FamilyBound, FamilyUnbound
from services.card.models import ECard, FamilyBinding, Person
from services.card.schemas import (
    CardOut,
    FamilyBindingIn,
    FamilyBindingList,
    FamilyBindingOut,
    FamilyRole,
    FamilyStatus,
    QrCodeOut,
)
from services.card.service import card_out, live_card, refresh_loss
from services.common.audit import record_audit
from services.common.clock import Clock, aware
from services.common.errors import Conflict
from services.common.identifiers import id_number_info
from services.common.pii import id_hash, mask_id_number, mask_name
from services.common.principal import Principal
from services.contracts.enums import FamilyRelation

MAX_BINDINGS = 8
ADULT_AGE = 16
LIVE = (FamilyStatus.pending, FamilyStatus.active)
# Each failed insert means a concurrent request took a slot or the pair: after at most
# MAX_BINDINGS of them the slots are full or the pair is taken, and the answer is definite.
_INSERT_TRIES = MAX_BINDINGS + 1


def age_on(born: date, today: date) -> int:
    """Whole years of age on `today` (a 29 February birthday comes of age on 1 March)."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def binding_out(binding: FamilyBinding, *, viewer_hash: str) -> FamilyBindingOut:
    """The binding as the caller sees it: their role in it, both persons masked."""
    return FamilyBindingOut(
        id=binding.id,
        role=FamilyRole.holder if binding.holder_hash == viewer_hash else FamilyRole.relative,
        relation=FamilyRelation(binding.relation),
        status=FamilyStatus(binding.status),
        relative_minor=binding.relative_minor,
        holder_name_masked=mask_name(binding.holder_name) or "",
        holder_id_number_masked=mask_id_number(binding.holder_id_number) or "",
        relative_name_masked=mask_name(binding.relative_name) or "",
        relative_id_number_masked=mask_id_number(binding.relative_id_number) or "",
        created_at=aware(binding.created_at),
        accepted_at=aware(binding.accepted_at) if binding.accepted_at else None,
        ended_at=aware(binding.ended_at) if binding.ended_at else None,
        ended_by=FamilyRole(binding.ended_by) if binding.ended_by else None,
    )


def _caller_hash(principal: Principal) -> str:
    return id_hash(principal.id_number or "")


async def _person_id(session: AsyncSession, hash_: str) -> str | None:
    person = await session.get(Person, hash_)
    return person.person_id if person is not None else None


async def _emit_bound(session: AsyncSession, binding: FamilyBinding, clock: Clock) -> None:
    OUTBOX.emit(
        session, type=FAMILY_BOUND, subject=binding.id, time=clock.now(),
        data=FamilyBound(
            binding_id=binding.id, holder_id_hash=binding.holder_hash,
            holder_person_id=await _person_id(session, binding.holder_hash),
            relative_id_hash=binding.relative_hash,
            relative_person_id=await _person_id(session, binding.relative_hash),
            relation=FamilyRelation(binding.relation), relative_minor=binding.relative_minor,
            bound_at=clock.now(),
        ),
    )


def _close(binding: FamilyBinding, *, status: FamilyStatus, by: FamilyRole, clock: Clock) -> None:
    """A final state: the binding gives back its slot and its pair."""
    binding.status = status
    binding.ended_at = clock.now()
    binding.ended_by = by
    binding.slot_key = None
    binding.pair_key = None


# ---- binding ------------------------------------------------------------------------------


async def _live_of_holder(session: AsyncSession, holder_hash: str) -> Sequence[FamilyBinding]:
    return (
        await session.execute(
            select(FamilyBinding).where(FamilyBinding.holder_hash == holder_hash, FamilyBinding.status.in_(LIVE))
        )
    ).scalars().all()


async def bind(*, session: AsyncSession, principal: Principal, data: FamilyBindingIn, clock: Clock) -> FamilyBindingOut:
    """添加家庭成员: an invitation to an adult, or at once for a child under 16 added by a parent."""
    holder_hash = _caller_hash(principal)
    relative_hash = id_hash(data.id_number)
    if relative_hash == holder_hash:
        raise FamilySelfBinding()
    minor = age_on(id_number_info(data.id_number).birth_date, clock.today()) < ADULT_AGE
    if minor and data.relation != FamilyRelation.child:
        raise FamilyMinorRelation(params={"relation": str(data.relation), "allowed_relations": [FamilyRelation.child]})
    now = clock.now()
    pair_key = f"{holder_hash}:{relative_hash}"
    binding: FamilyBinding | None = None
    for _ in range(_INSERT_TRIES):
        live = await _live_of_holder(session, holder_hash)
        if any(b.relative_hash == relative_hash for b in live):
            raise FamilyBindingExists()
        used = {b.slot_key for b in live}
        free = [n for n in range(1, MAX_BINDINGS + 1) if f"{holder_hash}:{n}" not in used]
        if not free:
            raise FamilyLimitReached(params={"limit": MAX_BINDINGS})
        candidate = FamilyBinding(
            id=str(uuid.uuid4()), holder_hash=holder_hash, holder_id_number=principal.id_number or "",
            holder_name=principal.name or "", relative_hash=relative_hash, relative_id_number=data.id_number,
            relative_name=data.name, relation=data.relation, relative_minor=minor,
            status=FamilyStatus.active if minor else FamilyStatus.pending,
            slot_key=f"{holder_hash}:{free[0]}", pair_key=pair_key, created_at=now,
            accepted_at=now if minor else None,
        )
        try:
            async with session.begin_nested():
                session.add(candidate)
                await session.flush()
        except IntegrityError:
            # A concurrent request took the slot or the pair: look again.
            continue
        binding = candidate
        break
    if binding is None:
        raise Conflict(detail_zh="请稍后重试", detail_en="Concurrent changes to your family bindings: try again")
    if minor:
        record_audit(
            session, actor=principal, action="card.family.child_bound", target_type="family_binding",
            target_id=binding.id, at=now,
            details={"relation": binding.relation, "relative_id_number_masked": mask_id_number(data.id_number)},
        )
        await _emit_bound(session, binding, clock)
    return binding_out(binding, viewer_hash=holder_hash)


async def _locked(session: AsyncSession, binding_id: str) -> FamilyBinding | None:
    return (
        await session.execute(select(FamilyBinding).where(FamilyBinding.id == binding_id).with_for_update())
    ).scalar_one_or_none()


async def _invitation(session: AsyncSession, principal: Principal, binding_id: str) -> FamilyBinding:
    """A pending invitation addressed to the caller (by their id number); 404 for anyone else."""
    binding = await _locked(session, binding_id)
    if binding is None or binding.relative_hash != _caller_hash(principal) or binding.relative_minor:
        raise FamilyInvitationNotFound()
    if binding.status != FamilyStatus.pending:
        raise FamilyInvitationNotPending(params={"binding_status": binding.status})
    return binding


async def accept(*, session: AsyncSession, principal: Principal, binding_id: str, clock: Clock) -> FamilyBindingOut:
    """The relative accepts with their own token: the binding is active from now."""
    binding = await _invitation(session, principal, binding_id)
    binding.status = FamilyStatus.active
    binding.accepted_at = clock.now()
    if principal.name:
        binding.relative_name = principal.name  # the real name the platform verified
    await _emit_bound(session, binding, clock)
    return binding_out(binding, viewer_hash=binding.relative_hash)


async def decline(*, session: AsyncSession, principal: Principal, binding_id: str, clock: Clock) -> FamilyBindingOut:
    """The relative declines: nothing was shared, and the holder's slot is free again."""
    binding = await _invitation(session, principal, binding_id)
    _close(binding, status=FamilyStatus.declined, by=FamilyRole.relative, clock=clock)
    return binding_out(binding, viewer_hash=binding.relative_hash)


async def unbind(*, session: AsyncSession, principal: Principal, binding_id: str, clock: Clock) -> None:
    """解除绑定 by either side, effective at once; a pending one is withdrawn (holder) or declined (relative)."""
    me = _caller_hash(principal)
    binding = await _locked(session, binding_id)
    if binding is None or me not in (binding.holder_hash, binding.relative_hash) or binding.status not in LIVE:
        raise FamilyBindingNotFound()
    by = FamilyRole.holder if me == binding.holder_hash else FamilyRole.relative
    if binding.status == FamilyStatus.pending:
        _close(binding, status=FamilyStatus.withdrawn if by == FamilyRole.holder else FamilyStatus.declined,
               by=by, clock=clock)
        return
    _close(binding, status=FamilyStatus.ended, by=by, clock=clock)
    OUTBOX.emit(
        session, type=FAMILY_UNBOUND, subject=binding.id, time=clock.now(),
        data=FamilyUnbound(
            binding_id=binding.id, holder_id_hash=binding.holder_hash,
            holder_person_id=await _person_id(session, binding.holder_hash),
            relative_id_hash=binding.relative_hash,
            relative_person_id=await _person_id(session, binding.relative_hash),
            unbound_by=by, unbound_at=clock.now(),
        ),
    )
    record_audit(
        session, actor=principal, action="card.family.unbound", target_type="family_binding", target_id=binding.id,
        at=clock.now(), details={"by": str(by)},
    )


# ---- reading ---------------------------------------------------------------------------------


async def my_bindings(*, session: AsyncSession, principal: Principal) -> FamilyBindingList:
    """Pending and active bindings in both directions: relatives I added, and those who added me."""
    me = _caller_hash(principal)
    rows = (
        await session.execute(
            select(FamilyBinding)
            .where(or_(FamilyBinding.holder_hash == me, FamilyBinding.relative_hash == me),
                   FamilyBinding.status.in_(LIVE))
            .order_by(FamilyBinding.created_at, FamilyBinding.id)
        )
    ).scalars().all()
    return FamilyBindingList(items=[binding_out(b, viewer_hash=me) for b in rows])


async def my_invitations(*, session: AsyncSession, principal: Principal) -> FamilyBindingList:
    """Invitations addressed to me that wait for my answer."""
    me = _caller_hash(principal)
    rows = (
        await session.execute(
            select(FamilyBinding)
            .where(FamilyBinding.relative_hash == me, FamilyBinding.status == FamilyStatus.pending)
            .order_by(FamilyBinding.created_at, FamilyBinding.id)
        )
    ).scalars().all()
    return FamilyBindingList(items=[binding_out(b, viewer_hash=me) for b in rows])


async def _active_as_holder(session: AsyncSession, principal: Principal, binding_id: str) -> FamilyBinding:
    """An active binding the caller holds; someone else's is 404, a pending or ended one 409."""
    binding = await session.get(FamilyBinding, binding_id)
    if binding is None or binding.holder_hash != _caller_hash(principal):
        raise FamilyBindingNotFound()
    if binding.status != FamilyStatus.active:
        raise FamilyBindingNotActive(params={"binding_status": binding.status})
    return binding


async def relative_card(*, session: AsyncSession, principal: Principal, binding_id: str, clock: Clock) -> CardOut:
    """The bound relative's card, masked (no e-card details)."""
    binding = await _active_as_holder(session, principal, binding_id)
    card = await live_card(session=session, holder_hash=binding.relative_hash)
    if card is None:
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    return card_out(card)


async def relative_qrcode(
    *, session: AsyncSession, principal: Principal, binding_id: str, signer: QrSigner, clock: Clock
) -> QrCodeOut:
    """A signed QR payload of the bound relative's e-card on the caller's platform (60 s, one use)."""
    platform = platform_of(principal)
    binding = await _active_as_holder(session, principal, binding_id)
    card = await live_card(session=session, holder_hash=binding.relative_hash)
    if card is None:
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    ecard = (
        await session.execute(select(ECard).where(ECard.card_id == card.id, ECard.platform == platform))
    ).scalar_one_or_none()
    qr = sign_qrcode(card=card, ecard=ecard, platform=platform, signer=signer, clock=clock)
    record_audit(
        session, actor=principal, action="card.family.qrcode", target_type="family_binding", target_id=binding.id,
        at=clock.now(), details={"card_id": card.id, "ecard_id": qr.ecard_id},
    )
    return qr
