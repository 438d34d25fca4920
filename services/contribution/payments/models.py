"""Payment tables: payments, the notification log, certificates (private to the contribution service)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
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
    refunded = "refunded"  # paid back in full (payments.refunds)


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
    # Asking the platform about an open payment whose notification has not come (payments.queries).
    query_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    next_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Reserved by refunds not failed (payments.refunds); never above the amount taken.
    refunded_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    # Who pays: NULL for the declaration's own payer, `family` for a bound relative (contribution.family).
    paid_by: Mapped[str | None] = mapped_column(String(20))


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


class RefundStatus(StrEnum):
    processing = "processing"  # recorded, asked of the platform (or about to be), not settled yet
    succeeded = "succeeded"
    failed = "failed"  # refused by the platform, or closed by it: nothing moved
    abnormal = "abnormal"  # the platform could not pay it back (closed card, ...): staff act at the platform


class Refund(Base):
    """A refund of (part of) a payment.

    The row, with its `out_refund_no` (Alipay's `out_request_no`, WeChat Pay's `out_refund_no`),
    is committed before the platform is asked; a retry asks again with the same number, which
    the platforms answer without moving money twice. `payments.refunded_fen` holds what is
    reserved by refunds not failed: it is raised by a conditional update that never lets it
    pass the payment's amount.
    """

    __tablename__ = "payment_refunds"
    __table_args__ = (
        Index("ix_payment_refunds_payment", "payment_id", "requested_at"),
        Index("ix_payment_refunds_status", "status", "requested_at"),
        CheckConstraint("amount_fen > 0", name="ck_payment_refunds_amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), nullable=False)
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    out_refund_no: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    uncredit: Mapped[bool] = mapped_column(Boolean, nullable=False)  # a paid payment refunded: its months uncredited
    requested_by: Mapped[str] = mapped_column(String(200), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    platform_refund_no: Mapped[str | None] = mapped_column(String(64))
    platform_status: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReconciliationOutcome(StrEnum):
    matched = "matched"
    ours_only = "ours_only"
    theirs_only = "theirs_only"
    amount_differs = "amount_differs"
    status_differs = "status_differs"


class Reconciliation(Base):
    """One day's comparison of our payments and refunds with a platform's bill (rerun: replaced)."""

    __tablename__ = "payment_reconciliations"
    __table_args__ = (UniqueConstraint("bill_date", "channel", name="uq_payment_reconciliations_day"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bill_date: Mapped[str] = mapped_column(String(10), nullable=False)  # YYYY-MM-DD, Asia/Shanghai
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    bill_rows: Mapped[int] = mapped_column(Integer, nullable=False)
    runs: Mapped[int] = mapped_column(Integer, nullable=False)
    first_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_run_by: Mapped[str] = mapped_column(String(200), nullable=False)


class ReconciliationItem(Base):
    """One trade or refund of the day, ours or the platform's, and how they compare."""

    __tablename__ = "payment_reconciliation_items"
    __table_args__ = (UniqueConstraint("reconciliation_id", "item_key", name="uq_payment_reconciliation_items_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[str] = mapped_column(ForeignKey("payment_reconciliations.id"), nullable=False)
    item_key: Mapped[str] = mapped_column(String(80), nullable=False)  # trade:<out_trade_no> / refund:<out_refund_no>
    kind: Mapped[str] = mapped_column(String(10), nullable=False)  # trade, refund
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    out_trade_no: Mapped[str] = mapped_column(String(64), nullable=False)
    out_refund_no: Mapped[str | None] = mapped_column(String(64))
    platform_no: Mapped[str | None] = mapped_column(String(64))
    payment_id: Mapped[str | None] = mapped_column(String(36))
    refund_id: Mapped[str | None] = mapped_column(String(36))
    ours_fen: Mapped[int | None] = mapped_column(BigInteger)
    theirs_fen: Mapped[int | None] = mapped_column(BigInteger)
    ours_status: Mapped[str | None] = mapped_column(String(20))
    theirs_status: Mapped[str | None] = mapped_column(String(20))
    resolution: Mapped[str | None] = mapped_column(String(40))  # credited (after a query), ...
