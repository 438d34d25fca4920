"""Payment tables: payments, the notification log, certificates (private to the contribution service)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.pii import EncryptedString
from services.common.types import UTCDateTime
from services.contribution.models import Base


class PaymentChannel(StrEnum):
    alipay = "alipay"
    wechat = "wechat"


class PaymentStatus(StrEnum):
    open = "open"  # waiting for the person to pay
    paid = "paid"  # credited to the declaration
    closed = "closed"  # not paid in time (or closed by the platform)
    refund_pending = "refund_pending"  # money taken but not creditable: to refund (or re-use) by staff


class Payment(Base):
    """One attempt to pay a declaration through a platform.

    `open_declaration_id` holds the declaration id while the payment is open and
    is NULL otherwise: its unique constraint is the rule "at most one open payment
    per declaration", enforced by the database.
    """

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_declaration", "declaration_id", "opened_at"),
        Index("ix_payments_status_closes", "status", "closes_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    declaration_id: Mapped[str] = mapped_column(ForeignKey("declarations.id"), nullable=False)
    open_declaration_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    out_trade_no: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    subject: Mapped[str] = mapped_column(String(128), nullable=False)
    payer_ref: Mapped[str] = mapped_column(String(128), nullable=False)  # platform user id of the payer
    prepay_id: Mapped[str | None] = mapped_column(String(64))  # WeChat Pay
    platform_trade_no: Mapped[str | None] = mapped_column(String(64))  # Alipay trade_no / WeChat transaction_id
    opened_by: Mapped[str] = mapped_column(String(200), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    flag: Mapped[str | None] = mapped_column(String(40))  # why staff must look (paid_after_close, ...)
    certificate_code: Mapped[str | None] = mapped_column(String(40), unique=True)
    # Who the certificate names, as known when the payment was opened.
    holder_name: Mapped[str | None] = mapped_column(EncryptedString())
    holder_id_masked: Mapped[str | None] = mapped_column(String(32))


class PaymentNotification(Base):
    """Every platform notification received, verified or not, and what was done with it."""

    __tablename__ = "payment_notifications"
    __table_args__ = (Index("ix_payment_notifications_trade", "out_trade_no", "received_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False)
    outcome: Mapped[str] = mapped_column(String(40), nullable=False)
    out_trade_no: Mapped[str | None] = mapped_column(String(64))
    platform_trade_no: Mapped[str | None] = mapped_column(String(64))
    notify_id: Mapped[str | None] = mapped_column(String(128))
    trade_status: Mapped[str | None] = mapped_column(String(40))
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    payment_id: Mapped[str | None] = mapped_column(String(36))
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raw: Mapped[str] = mapped_column(Text, nullable=False)


class Certificate(Base):
    """A payment certificate: its unguessable verification code and what it attests."""

    __tablename__ = "payment_certificates"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), nullable=False, unique=True)
    declaration_id: Mapped[str] = mapped_column(String(36), nullable=False)
    holder_name: Mapped[str | None] = mapped_column(EncryptedString())
    holder_id_masked: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    months: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    platform_trade_no: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
