"""Family service (亲情服务) on the contribution side: a citizen pays a bound relative's declarations.

Card owns the bindings and publishes `card.family.bound.v1` / `card.family.unbound.v1`; this
service keeps them by binding id (`family_bindings`). While a binding is active its holder may
read the relative's declarations (`GET /contribution/v1/me/family/{binding_id}/declarations`) and
open a payment of one (`POST /contribution/v1/me/declarations/{declaration_id}/payments`); the
payment, the declaration and the credited records then say `paid_by = "family"`. The relative
cannot pay the holder's declarations through the same binding (it goes one way).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import DbSession
from services.common.events import CloudEvent, Handler, ReadModelRoute
from services.common.identifiers import AsciiInt
from services.common.pagination import CursorQuery
from services.common.paths import IdPath
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind, require
from services.contracts import card
from services.contribution.declarations import reading
from services.contribution.errors import FamilyBindingNotFound
from services.contribution.models import Declaration, FamilyBinding, KnownPerson
from services.contribution.schemas import DeclarationListItem

# ---- the read model (card's events) -------------------------------------------------------


async def on_family_bound(session: AsyncSession, event: CloudEvent) -> None:
    """A binding became active; one already ended (its unbound event came first) stays ended."""
    data = card.FamilyBound.model_validate(event.data)
    row = await session.get(FamilyBinding, data.binding_id)
    if row is None:
        session.add(FamilyBinding(
            binding_id=data.binding_id, holder_id_hash=data.holder_id_hash, relative_id_hash=data.relative_id_hash,
            active=True, bound_at=data.bound_at,
        ))
    elif row.bound_at is None:
        row.bound_at = data.bound_at
    await session.flush()


async def on_family_unbound(session: AsyncSession, event: CloudEvent) -> None:
    """A binding ended, at once; recorded even when its bound event has not been seen."""
    data = card.FamilyUnbound.model_validate(event.data)
    row = await session.get(FamilyBinding, data.binding_id)
    if row is None:
        session.add(FamilyBinding(
            binding_id=data.binding_id, holder_id_hash=data.holder_id_hash, relative_id_hash=data.relative_id_hash,
            active=False, unbound_at=data.unbound_at,
        ))
    else:
        row.active = False
        if row.unbound_at is None:
            row.unbound_at = data.unbound_at
    await session.flush()


CARD_HANDLERS: dict[str, Handler] = {
    card.FAMILY_BOUND: on_family_bound,
    card.FAMILY_UNBOUND: on_family_unbound,
}


# ---- who may pay ----------------------------------------------------------------------------


async def bound(session: AsyncSession, *, holder_id_hash: str, relative_id_hash: str) -> bool:
    """Whether an active binding lets the holder act for the relative."""
    stmt = select(FamilyBinding.binding_id).where(
        FamilyBinding.holder_id_hash == holder_id_hash, FamilyBinding.relative_id_hash == relative_id_hash,
        FamilyBinding.active.is_(True),
    ).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none() is not None

# Binding relatives takes a level-3 citizen in the card service; acting for one here does too.
FAMILY_MIN_LEVEL = 3


def pays_for_relative(principal: Principal, decl: Declaration) -> bool:
    """A citizen paying a person's declaration that is not their own (allowed only through a binding)."""
    return (
        principal.kind == PrincipalKind.citizen and principal.id_number is not None
        and decl.source in reading.PERSON_SOURCES and decl.person_key is not None
        and decl.person_key != id_hash(principal.id_number)
    )


async def may_pay_for_relative(session: AsyncSession, principal: Principal, decl: Declaration) -> bool:
    """A citizen bound (as holder) to the declaration's owner by an active binding."""
    if not pays_for_relative(principal, decl):
        return False
    assert principal.id_number is not None and decl.person_key is not None
    return await bound(session, holder_id_hash=id_hash(principal.id_number), relative_id_hash=decl.person_key)


# ---- routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/contribution/v1", tags=["family"], route_class=ReadModelRoute)

CitizenL3 = Annotated[Principal, Depends(require("citizen", min_level=3))]
Limit = Annotated[AsciiInt, Query(ge=1, le=200)]


class FamilyDeclarationPage(BaseModel):
    """A bound relative's declarations, newest first; the relative's id number masked."""

    binding_id: str
    relative_id_masked: str | None = None
    items: list[DeclarationListItem]
    next_cursor: str | None = None


async def active_binding_of_holder(session: AsyncSession, *, principal: Principal, binding_id: str) -> FamilyBinding:
    """The caller's active binding as holder; 404 `family_binding_not_found` otherwise (after catching up)."""
    row = await session.get(FamilyBinding, binding_id) if len(binding_id) <= 36 else None
    if (
        row is None or not row.active or principal.id_number is None
        or row.holder_id_hash != id_hash(principal.id_number)
    ):
        raise FamilyBindingNotFound()
    return row


@router.get(
    "/me/family/{binding_id:id}/declarations", response_model=FamilyDeclarationPage,
    summary="A bound relative's declarations (亲情缴费), to pay them",
    responses={404: {"description": "family_binding_not_found"}},
)
async def relative_declarations(
    session: DbSession, principal: CitizenL3, binding_id: IdPath, limit: Limit = 50, cursor: CursorQuery = None,
) -> FamilyDeclarationPage:
    """Only while the binding is active and only for its holder (the citizen who added the relative);
    pay one with `POST /contribution/v1/me/declarations/{declaration_id}/payments` (paid_by `family`)."""
    binding = await active_binding_of_holder(session, principal=principal, binding_id=binding_id)
    stmt = select(Declaration).where(
        Declaration.person_key == binding.relative_id_hash, Declaration.source.in_(reading.PERSON_SOURCES)
    )
    rows, nxt = await reading.page_of_declarations(session=session, stmt=stmt, limit=limit, cursor=cursor)
    known = (
        await session.execute(select(KnownPerson.id_masked).where(KnownPerson.id_hash == binding.relative_id_hash))
    ).scalars().first()
    return FamilyDeclarationPage(
        binding_id=binding.binding_id, relative_id_masked=known, items=[reading.list_item(d) for d in rows],
        next_cursor=nxt,
    )
