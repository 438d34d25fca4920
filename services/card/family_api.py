"""Family service routes (亲情服务): bind relatives, answer invitations, act for a bound relative."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from services.card import family
from services.card.api import REFUSALS, CitizenL3, signer_of
from services.card.schemas import CardOut, FamilyBindingIn, FamilyBindingList, FamilyBindingOut, QrCodeOut
from services.common.clock import ClockDep
from services.common.db import DbSession, DbWriteSession
from services.common.events import ReadModelRoute
from services.common.paths import IdPath

router = APIRouter(prefix="/card/v1", tags=["family"], route_class=ReadModelRoute)

BindingId = IdPath


@router.post(
    "/me/family", status_code=201, response_model=FamilyBindingOut, summary="Add a relative (添加家庭成员)",
    responses={
        **REFUSALS, 409: {"description": "family_binding_exists, family_limit_reached (limit)"},
        422: {"description": "family_self_binding, family_minor_relation, id_number_invalid, name_invalid, validation_failed"},
    },
)
async def add_relative(request: Request, session: DbSession, principal: CitizenL3, body: FamilyBindingIn, clock: ClockDep) -> Any:
    """An adult relative (16 or older) gets an invitation and must accept it with their own token
    (`pending`); a child under 16 is bound at once by a parent (relation `child`, `active`, audited).
    At most 8 bindings pending or active per citizen."""
    return await family.bind(session=session, principal=principal, data=body, clock=clock)


@router.get("/me/family", response_model=FamilyBindingList, summary="My family bindings", responses=REFUSALS)
async def list_family(session: DbSession, principal: CitizenL3) -> FamilyBindingList:
    """Pending and active bindings both ways (`role` holder: I added them; relative: they added me), masked."""
    return await family.my_bindings(session=session, principal=principal)


@router.delete(
    "/me/family/{binding_id:id}", status_code=204, summary="Unbind a relative (解除绑定)",
    responses={**REFUSALS, 404: {"description": "family_binding_not_found"}},
)
async def unbind(request: Request, session: DbSession, principal: CitizenL3, binding_id: BindingId, clock: ClockDep) -> Response:
    """Either side, at any time, effective at once; a pending invitation is withdrawn (or declined)."""
    await family.unbind(session=session, principal=principal, binding_id=binding_id, clock=clock)
    return Response(status_code=204)


@router.get(
    "/me/family/{binding_id:id}/card", response_model=CardOut, summary="A bound relative's card (masked)",
    responses={**REFUSALS, 404: {"description": "family_binding_not_found, card_not_found"},
               409: {"description": "family_binding_not_active (binding_status)"}},
)
async def relative_card(request: Request, session: DbWriteSession, principal: CitizenL3, binding_id: BindingId, clock: ClockDep) -> CardOut:
    # DbWriteSession: a temporary loss whose day has come is lifted when read.
    """The relative's card status, masked card number, bank; only while the binding is active."""
    return await family.relative_card(session=session, principal=principal, binding_id=binding_id, clock=clock)


@router.post(
    "/me/family/{binding_id:id}/ecard/qrcode", response_model=QrCodeOut, summary="A signed QR payload of a bound relative's e-card",
    responses={**REFUSALS, 404: {"description": "family_binding_not_found, card_not_found, ecard_not_found"},
               409: {"description": "family_binding_not_active (status), card_state_conflict"}},
)
async def relative_qrcode(request: Request, session: DbSession, principal: CitizenL3, binding_id: BindingId, clock: ClockDep) -> Any:
    """The relative's e-card on the caller's platform: ES256-signed, valid 60 s, one use; audited."""
    return await family.relative_qrcode(
        session=session, principal=principal, binding_id=binding_id, signer=signer_of(request), clock=clock
    )


@router.get(
    "/me/family-invitations", response_model=FamilyBindingList, summary="Family invitations addressed to me",
    responses=REFUSALS,
)
async def list_invitations(session: DbSession, principal: CitizenL3) -> FamilyBindingList:
    """Pending bindings whose relative is the caller (by the id number of the token), masked."""
    return await family.my_invitations(session=session, principal=principal)


@router.post(
    "/me/family-invitations/{binding_id:id}/acceptance", response_model=FamilyBindingOut,
    summary="Accept a family invitation",
    responses={**REFUSALS, 404: {"description": "family_invitation_not_found"},
               409: {"description": "family_invitation_not_pending (binding_status)"}},
)
async def accept(request: Request, session: DbSession, principal: CitizenL3, binding_id: BindingId, clock: ClockDep) -> Any:
    """Only the invited relative, with their own token: the binding becomes active and is published."""
    return await family.accept(session=session, principal=principal, binding_id=binding_id, clock=clock)


@router.post(
    "/me/family-invitations/{binding_id:id}/refusal", response_model=FamilyBindingOut,
    summary="Decline a family invitation",
    responses={**REFUSALS, 404: {"description": "family_invitation_not_found"},
               409: {"description": "family_invitation_not_pending (binding_status)"}},
)
async def decline(request: Request, session: DbSession, principal: CitizenL3, binding_id: BindingId, clock: ClockDep) -> Any:
    """Only the invited relative: nothing is shared and the inviter's slot is free again."""
    return await family.decline(session=session, principal=principal, binding_id=binding_id, clock=clock)
