"""Card API shapes: the public contract."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.common.identifiers import AsciiText, IdNumber, PersonName, RegionCode
from services.common.pagination import Page
from services.common.regions import RegionNamed
from services.contracts.enums import FamilyRelation


class CardStatus(StrEnum):
    applied = "applied"
    issued = "issued"
    active = "active"
    temporarily_lost = "temporarily_lost"
    formally_lost = "formally_lost"
    replaced = "replaced"
    cancelled = "cancelled"


LIVE_STATUSES = frozenset({CardStatus.applied, CardStatus.issued, CardStatus.active, CardStatus.temporarily_lost})


class LossKind(StrEnum):
    temporary = "temporary"
    formal = "formal"


class InitialPinRule(StrEnum):
    id_last6 = "id_last6"  # last six digits of the id number, X read as 0
    fixed = "fixed"


def _upper_strip(v: object) -> object:
    return v.strip().upper() if isinstance(v, str) else v


def _strip(v: object) -> object:
    return v.strip() if isinstance(v, str) else v


# The schema states what is accepted: the letter in either case, blanks around it trimmed
# (full-width forms typed by an input method are read as ASCII first).
CardNo = Annotated[AsciiText, BeforeValidator(_upper_strip), Field(
    pattern=r"^[A-Z][0-9]{8}$", examples=["J12345678"],
    json_schema_extra={"pattern": r"^\s*[A-Za-z][0-9]{8}\s*$"},
)]
Pin = Annotated[AsciiText, Field(pattern=r"^[0-9]{6}$", min_length=6, max_length=6, json_schema_extra={"pattern": "^[0-9]{6}$"})]
HolderName = Annotated[PersonName, Field(max_length=50)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplicationIn(_In):
    """Applying needs no input: the holder and region come from the enrolment."""


class IssuanceIn(_In):
    card_no: CardNo
    bank: Annotated[str, BeforeValidator(_strip), Field(min_length=1, max_length=60)]


class ActivationIn(_In):
    card_no: CardNo
    id_number: IdNumber
    name: HolderName


class PinChangeIn(_In):
    old_pin: Pin
    new_pin: Pin


class PinResetIn(_In):
    """Without `new_pin` the PIN goes back to the region's initial PIN (flagged unchanged)."""

    new_pin: Pin | None = None
    reason: Annotated[str | None, Field(max_length=500)] = None


class LossReportIn(_In):
    """A citizen reports their own card; the hotline names the holder (id number and name)."""

    kind: LossKind
    id_number: IdNumber | None = None
    name: HolderName | None = None


class CancellationIn(_In):
    reason: Annotated[str, BeforeValidator(_strip), Field(min_length=1, max_length=500)]


class FamilyBindingIn(_In):
    """A relative to bind: their id number and name as on it, and how they are related to the caller."""

    id_number: IdNumber
    name: HolderName
    relation: FamilyRelation


class VerificationIn(_In):
    payload: Annotated[str, Field(min_length=1, max_length=4096)]


class CardRuleIn(_In):
    region_code: RegionCode
    effective_from: date
    initial_pin_rule: InitialPinRule
    initial_pin_fixed: Pin | None = None
    pin_max_tries: Annotated[int, Field(ge=1, le=10)]
    temporary_loss_days: Annotated[int, Field(ge=1, le=365)]
    activation_max_mismatches: Annotated[int, Field(ge=1, le=20)] = 5
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _fixed_pin_matches_rule(self) -> CardRuleIn:
        if self.initial_pin_rule == InitialPinRule.fixed and self.initial_pin_fixed is None:
            raise ValueError("initial_pin_fixed is required when initial_pin_rule is fixed")
        if self.initial_pin_rule == InitialPinRule.id_last6 and self.initial_pin_fixed is not None:
            raise ValueError("initial_pin_fixed is only for the fixed rule")
        return self


# ---- answers ----------------------------------------------------------------------


class ECardOut(BaseModel):
    id: str
    card_id: str
    platform: str
    status: CardStatus  # mirrors the physical card
    card_no_masked: str | None
    issued_at: datetime


class LossReportSummary(BaseModel):
    id: str
    kind: LossKind
    reported_at: datetime
    lifts_on: date | None


class CardOut(RegionNamed):
    id: str
    status: CardStatus
    card_no_masked: str | None
    initial_pin_unchanged: bool
    bank: str | None
    region_code: str
    holder_name_masked: str
    id_number_masked: str
    applied_at: datetime
    issued_at: datetime | None
    activated_at: datetime | None
    activation_channel: str | None
    activation_branch: str | None
    pin_locked: bool
    replaces_card_id: str | None
    replaced_by_card_id: str | None
    loss_report: LossReportSummary | None = None
    ecard: ECardOut | None = None


class CardStaffView(CardOut):
    """The card unmasked, for a staff operator (every such read is audited)."""

    card_no: str | None
    id_number: str
    holder_name: str


class LossReportOut(BaseModel):
    id: str
    kind: LossKind
    card_id: str
    reported_at: datetime
    reported_by: str
    lifts_on: date | None
    replacement_card_id: str | None
    card: CardOut


class QrCodeOut(BaseModel):
    payload: str
    ecard_id: str
    expires_at: datetime
    valid_seconds: int


class VerificationOut(BaseModel):
    id: str
    verified_at: datetime
    card_id: str
    card_status: CardStatus
    card_no_masked: str | None
    holder_name_masked: str
    id_number_masked: str
    platform: str


class CardRuleOut(RegionNamed):
    id: int
    region_code: str
    effective_from: date
    effective_to: date | None
    initial_pin_rule: InitialPinRule
    pin_max_tries: int
    temporary_loss_days: int
    activation_max_mismatches: int
    created_at: datetime
    created_by: str


class CardPage(Page[CardOut]):
    pass


class CardRulePage(Page[CardRuleOut]):
    pass


class FamilyStatus(StrEnum):
    pending = "pending"  # waiting for the adult relative's acceptance
    active = "active"
    declined = "declined"  # the relative declined the invitation
    withdrawn = "withdrawn"  # the holder withdrew it before an answer
    ended = "ended"  # unbound by either side


class FamilyRole(StrEnum):
    holder = "holder"  # the caller added the relative
    relative = "relative"  # the caller is the one added


class FamilyBindingOut(BaseModel):
    """A family binding as either side sees it: both persons masked."""

    id: str
    role: FamilyRole
    relation: FamilyRelation
    status: FamilyStatus
    relative_minor: bool
    holder_name_masked: str
    holder_id_number_masked: str
    relative_name_masked: str
    relative_id_number_masked: str
    created_at: datetime
    accepted_at: datetime | None
    ended_at: datetime | None
    ended_by: FamilyRole | None


class FamilyBindingList(BaseModel):
    items: list[FamilyBindingOut]
