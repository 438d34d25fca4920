"""Card tables (private to this service)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.pii import EncryptedString
from services.common.types import UTCDateTime


class Base(DeclarativeBase):
    """Metadata of the card service's own tables."""


# ---- read model of registration's events -------------------------------------


class Person(Base):
    """A person known from registration's events (keyed by the keyed id hash)."""

    __tablename__ = "persons"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), nullable=False)
    region_code: Mapped[str | None] = mapped_column(String(6))
    pensioner: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    pension_from: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Enrolment(Base):
    """An enrolment known from registration's events; `open` until ended or separated."""

    __tablename__ = "enrolments"
    __table_args__ = (Index("ix_enrolments_id_hash_open", "id_hash", "open"),)

    enrolment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    start_month: Mapped[str] = mapped_column(String(7), nullable=False)
    end_month: Mapped[str | None] = mapped_column(String(7))
    open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


# ---- regional rules -----------------------------------------------------------


class CardRule(Base):
    """A region's dated card rule: initial PIN, tries before lock, temporary-loss days."""

    __tablename__ = "card_rules"
    __table_args__ = (UniqueConstraint("region_code", "effective_from", name="uq_card_rules_region_from"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    effective_from: Mapped[date] = mapped_column(Date, nullable=False)
    effective_to: Mapped[date | None] = mapped_column(Date)
    initial_pin_rule: Mapped[str] = mapped_column(String(20), nullable=False)
    initial_pin_fixed: Mapped[str | None] = mapped_column(String(6))
    pin_max_tries: Mapped[int] = mapped_column(Integer, nullable=False)
    temporary_loss_days: Mapped[int] = mapped_column(Integer, nullable=False)
    activation_max_mismatches: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)


# ---- cards ----------------------------------------------------------------------


class Card(Base):
    """A social security card (the social-security side: activation, PIN, loss, e-card)."""

    __tablename__ = "cards"
    __table_args__ = (Index("ix_cards_status_applied", "status", "applied_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    # The holder's id hash while the card is live (applied .. temporarily_lost), else
    # NULL: the unique index lets the database hold one live card per person.
    live_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    id_number: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    holder_name: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    card_no: Mapped[str | None] = mapped_column(EncryptedString)
    card_no_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    bank: Mapped[str | None] = mapped_column(String(60))
    issued_by: Mapped[str | None] = mapped_column(String(200))
    replaces_card_id: Mapped[str | None] = mapped_column(ForeignKey("cards.id"))
    replaced_by_card_id: Mapped[str | None] = mapped_column(String(36))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activation_channel: Mapped[str | None] = mapped_column(String(20))
    activation_branch: Mapped[str | None] = mapped_column(String(100))
    activation_mismatches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    activation_locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    initial_pin_unchanged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    pin_failed_tries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pin_locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    loss_lifts_on: Mapped[date | None] = mapped_column(Date)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LossReport(Base):
    """挂失: a temporary or formal loss report of a card."""

    __tablename__ = "loss_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    reported_by: Mapped[str] = mapped_column(String(20), nullable=False)  # citizen, hotline
    lifts_on: Mapped[date | None] = mapped_column(Date)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_how: Mapped[str | None] = mapped_column(String(20))  # expired, holder
    replacement_card_id: Mapped[str | None] = mapped_column(String(36))


class ECard(Base):
    """An electronic card issued for one platform; its state mirrors the physical card."""

    __tablename__ = "ecards"
    __table_args__ = (UniqueConstraint("card_id", "platform", name="uq_ecards_card_platform"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"), nullable=False)
    platform: Mapped[str] = mapped_column(String(40), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class QrVerification(Base):
    """A scanned e-card QR payload a hospital verified; the nonce is unique, so a payload is used once."""

    __tablename__ = "qr_verifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"), nullable=False)
    ecard_id: Mapped[str] = mapped_column(String(36), nullable=False)
    channel: Mapped[str] = mapped_column(String(200), nullable=False)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


# ---- family service ----------------------------------------------------------------


class FamilyBinding(Base):
    """亲情服务: a citizen (the holder) binds a relative; the holder may then show the
    relative's e-card, read their card (masked) and pay for them.

    `pending` until an adult relative accepts with their own token; a child under 16 is
    `active` at once. `declined` and `ended` are final. While a binding is pending or
    active it holds one of the holder's eight `slot_key`s (`<holder hash>:<1..8>`) and
    its `pair_key` (`<holder hash>:<relative hash>`); both are unique, so the database
    itself keeps the limit and refuses a duplicate, and both are NULL once it is over.
    """

    __tablename__ = "family_bindings"
    __table_args__ = (
        Index("ix_family_bindings_holder", "holder_hash", "created_at"),
        Index("ix_family_bindings_relative", "relative_hash", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    holder_id_number: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    holder_name: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    relative_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    relative_id_number: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    relative_name: Mapped[str] = mapped_column(EncryptedString, nullable=False)
    relation: Mapped[str] = mapped_column(String(20), nullable=False)
    relative_minor: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    slot_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    pair_key: Mapped[str | None] = mapped_column(String(140), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_by: Mapped[str | None] = mapped_column(String(20))  # holder, relative
