"""Card HTTP routes: parse, authorize, call the service layer, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.card import ecard, loss_service, pin_service, rules, service
from services.card.ecard import QrSigner
from services.card.pins import PinHasher
from services.card.schemas import (
    ActivationIn,
    ApplicationIn,
    CancellationIn,
    CardOut,
    CardPage,
    CardRuleIn,
    CardRuleOut,
    CardRulePage,
    CardStaffView,
    CardStatus,
    ECardOut,
    IssuanceIn,
    LossReportIn,
    LossReportOut,
    PinChangeIn,
    PinResetIn,
    QrCodeOut,
    VerificationIn,
    VerificationOut,
)
from services.common.clock import ClockDep
from services.common.db import DbSession, DbWriteSession
from services.common.events import ReadModelRoute
from services.common.identifiers import RegionCode
from services.common.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from services.common.paths import IdPath
from services.common.principal import Principal, StaffAdmin, StaffOperator, StaffRoleRequired, require

router = APIRouter(prefix="/card/v1", tags=["card"], route_class=ReadModelRoute)

CHANNELS = ["bank", "hospital", "window", "hotline"]

CitizenL1 = Annotated[Principal, Depends(require("citizen", min_level=1))]
CitizenL2 = Annotated[Principal, Depends(require("citizen", min_level=2))]
CitizenL3 = Annotated[Principal, Depends(require("citizen", min_level=3))]
CitizenL3Fresh = Annotated[Principal, Depends(require("citizen", min_level=3, fresh=True))]
StaffOrBank = Annotated[Principal, Depends(require("staff", "channel", channel_kinds=["bank"], roles=["operator"]))]
Activator = Annotated[Principal, Depends(require("citizen", "channel", min_level=3, channel_kinds=CHANNELS))]
PinResetter = Annotated[Principal, Depends(require("citizen", "channel", min_level=3, face=True, channel_kinds=["window"]))]
LossReporter = Annotated[Principal, Depends(require("citizen", "channel", min_level=2, channel_kinds=["hotline"]))]
Hospital = Annotated[Principal, Depends(require("channel", channel_kinds=["hospital"]))]
CardId = IdPath
Limit = LimitQuery
Cursor = CursorQuery

REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or invalid principal (principal_required, principal_invalid)"},
    403: {"description": "principal_kind_not_allowed, realname_level_too_low, fresh_auth_required, face_auth_required, staff_role_required"},
}


def _hasher(request: Request) -> PinHasher:
    hasher: PinHasher = request.app.state.pin_hasher
    return hasher


def signer_of(request: Request) -> QrSigner:
    signer: QrSigner = request.app.state.qr_signer
    return signer


@router.post(
    "/me/applications", status_code=201, response_model=CardOut, summary="Apply for a card (申领)",
    responses={**REFUSALS, 409: {"description": "enrolment_required, card_already_exists"}},
)
async def apply(clock: ClockDep, session: DbSession, principal: CitizenL2, body: ApplicationIn | None = None) -> Any:
    """Needs an open enrolment (or a pension); creates the card record in `applied`."""
    return await service.apply_for_card(session=session, principal=principal, clock=clock)


@router.get("/cards", response_model=CardPage, summary="Cards by status (staff, bank)", responses=REFUSALS)
async def list_cards(
    # DbWriteSession: temporary losses whose day has come are lifted first.
    clock: ClockDep, session: DbWriteSession, principal: StaffOrBank,
    status: CardStatus = CardStatus.applied, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
) -> CardPage:
    """Cards in one state, oldest application first; `?status=applied` are the cards waiting to be made."""
    return await service.list_cards(session=session, status=status, limit=limit, cursor=cursor, clock=clock)


@router.get("/me/card", response_model=CardOut, summary="My card", responses={**REFUSALS, 404: {"description": "card_not_found"}})
async def get_my_card(clock: ClockDep, session: DbWriteSession, principal: CitizenL1) -> CardOut:
    # A temporary loss lifts itself when read on its day: the read may write.
    """Status, masked card number, bank, initial-PIN flag and the e-card of the calling platform."""
    card = await service.my_card(session=session, principal=principal, clock=clock)
    return await service.card_view(session=session, card=card, platform=principal.platform or principal.issuer)


@router.get(
    "/cards/{card_id:id}", response_model=CardStaffView | CardOut, summary="One card (staff, bank)",
    responses={**REFUSALS, 404: {"description": "card_not_found"}},
)
async def get_card(
    # DbWriteSession: a lapsed temporary loss is lifted; the unmasked read is audited.
    clock: ClockDep, session: DbWriteSession, principal: StaffOrBank, card_id: CardId, unmasked: bool = False,
) -> Any:
    """Masked by default; `?unmasked=true` shows the card number, id number and name to staff operators (audited)."""
    if unmasked and not principal.has_role("operator"):
        raise StaffRoleRequired(params={"roles": ["operator"]})
    return await service.card_for_staff(
        session=session, actor=principal, card_id=card_id, unmasked=unmasked, clock=clock
    )


@router.post(
    "/cards/{card_id:id}/cancellation", response_model=CardOut, summary="Cancel a card (staff operator, 注销)",
    responses={**REFUSALS, 404: {"description": "card_not_found"}, 409: {"description": "card_state_conflict"}},
)
async def cancel(clock: ClockDep, session: DbSession, principal: StaffOperator, card_id: CardId, body: CancellationIn) -> Any:
    """Ends a live card (death, emigration, a duplicate record); audited with the reason."""
    return await service.cancel_card(
        session=session, actor=principal, card_id=card_id, reason=body.reason, clock=clock
    )


@router.post(
    "/cards/{card_id:id}/issuance", response_model=CardOut, summary="Card made: number and bank (制卡)",
    responses={**REFUSALS, 404: {"description": "card_not_found"}, 409: {"description": "card_state_conflict, card_no_taken"}},
)
async def issue(request: Request, clock: ClockDep, session: DbSession, principal: StaffOrBank, card_id: CardId, body: IssuanceIn) -> Any:
    """Records the card number (a letter and 8 digits) and bank; sets the region's initial PIN."""
    return await service.issue_card(
        session=session, actor=principal, card_id=card_id, data=body, hasher=_hasher(request), clock=clock
    )


@router.post(
    "/activations", response_model=CardOut, summary="Activate a card (激活)",
    responses={
        **REFUSALS, 409: {"description": "card_state_conflict (current_state)"},
        422: {"description": "identity_mismatch (mismatches_left)"}, 423: {"description": "activation_locked"},
    },
)
async def activate(clock: ClockDep, session: DbSession, principal: Activator, body: ActivationIn) -> Any:
    """A bank, hospital, window or hotline channel, or the holder online at level 3: card number, id number and name must match."""
    return await service.activate_card(session=session, actor=principal, data=body, clock=clock)


@router.put(
    "/me/card/pin", response_model=CardOut, summary="Change my PIN (改密)",
    responses={
        **REFUSALS, 409: {"description": "card_state_conflict"},
        422: {"description": "pin_incorrect (tries_left), pin_too_weak (reason)"}, 423: {"description": "pin_locked"},
    },
)
async def change_pin(request: Request, clock: ClockDep, session: DbSession, principal: CitizenL3Fresh, body: PinChangeIn) -> Any:
    """The old PIN must match; the new one is 6 digits and not weak. The try reaching the limit locks the PIN."""
    return await pin_service.change_pin(
        session=session, principal=principal, data=body, hasher=_hasher(request), clock=clock
    )


@router.post(
    "/cards/{card_id:id}/pin-reset", response_model=CardOut, summary="Reset a locked or forgotten PIN",
    responses={**REFUSALS, 404: {"description": "card_not_found"}, 409: {"description": "card_state_conflict"},
               422: {"description": "pin_too_weak"}},
)
async def reset_pin(request: Request, clock: ClockDep, session: DbSession, principal: PinResetter, card_id: CardId, body: PinResetIn | None = None) -> Any:
    """At the bureau window, or by the holder with a face authentication under 5 minutes old."""
    data = body or PinResetIn()
    return await pin_service.reset_pin(
        session=session, actor=principal, card_id=card_id, data=data, hasher=_hasher(request), clock=clock
    )


@router.post(
    "/me/card/loss-reports", status_code=201, response_model=LossReportOut, summary="Report my card lost (挂失)",
    responses={**REFUSALS, 404: {"description": "card_not_found"}, 409: {"description": "card_state_conflict"}},
)
async def report_loss(clock: ClockDep, session: DbSession, principal: LossReporter, body: LossReportIn) -> Any:
    """Temporary (lifts by itself after the region's days) or formal (void; a replacement card is opened)."""
    return await loss_service.report_loss(session=session, actor=principal, data=body, clock=clock)


@router.delete(
    "/me/card/loss-reports/current", status_code=204, summary="Lift my temporary loss report (解挂)",
    responses={**REFUSALS, 404: {"description": "card_not_found"}, 409: {"description": "card_state_conflict"}},
)
async def lift_loss(clock: ClockDep, session: DbSession, principal: CitizenL3) -> Response:
    """Before its day, the holder (level 3) lifts a temporary loss report."""
    await loss_service.lift_loss(session=session, principal=principal, clock=clock)
    return Response(status_code=204)


@router.post(
    "/me/ecard", status_code=201, response_model=ECardOut, summary="Issue my electronic card for this platform",
    responses={**REFUSALS, 404: {"description": "card_not_found"},
               409: {"description": "card_state_conflict, ecard_already_issued"}},
)
async def issue_ecard(clock: ClockDep, session: DbSession, principal: CitizenL3Fresh) -> Any:
    """The electronic card of the platform the citizen calls from; it mirrors the physical card's state."""
    return await ecard.issue_ecard(session=session, principal=principal, clock=clock)


@router.post(
    "/me/ecard/qrcode", response_model=QrCodeOut, summary="A signed QR payload of my e-card",
    responses={**REFUSALS, 404: {"description": "card_not_found, ecard_not_found"}, 409: {"description": "card_state_conflict"}},
)
async def qrcode(request: Request, clock: ClockDep, session: DbSession, principal: CitizenL3) -> Any:
    """ES256-signed, valid for 60 s, with a one-time nonce; only for an active card."""
    return await ecard.make_qrcode(session=session, principal=principal, signer=signer_of(request), clock=clock)


@router.post(
    "/ecard/verifications", status_code=201, response_model=VerificationOut, summary="Verify a scanned e-card QR (hospital)",
    responses={**REFUSALS, 409: {"description": "qr_already_used, card_state_conflict"},
               422: {"description": "qr_invalid, qr_expired"}},
)
async def verify(request: Request, clock: ClockDep, session: DbSession, principal: Hospital, body: VerificationIn) -> Any:
    """Signature, expiry, single use and the card's state; answers the masked holder and the card state."""
    return await ecard.verify_qrcode(
        session=session, actor=principal, payload=body.payload, signer=signer_of(request), clock=clock
    )


@router.get("/rules", response_model=CardRulePage, summary="Regional card rules (staff)", responses=REFUSALS)
async def list_rules(
    session: DbSession, principal: StaffOperator, region_code: Annotated[RegionCode | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
) -> CardRulePage:
    """Initial PIN rule, tries before lock and temporary-loss days per region and period."""
    return await rules.list_rules(session=session, region_code=region_code, limit=limit, cursor=cursor)


@router.post(
    "/rules", status_code=201, response_model=CardRuleOut, summary="Add a dated regional card rule (staff admin)",
    responses={**REFUSALS, 409: {"description": "card_rule_exists"}, 422: {"description": "card_rule_effective_in_past"}},
)
async def create_rule(clock: ClockDep, session: DbSession, principal: StaffAdmin, body: CardRuleIn) -> Any:
    """Takes effect on `effective_from` (today or later); the rule it supersedes ends the day before. Audited."""
    return await rules.create_rule(session=session, actor=principal, data=body, today=clock.today(), now=clock.now())
