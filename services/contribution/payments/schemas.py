"""Public shapes of payments and certificates."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.common.pagination import Page
from services.common.regions import RegionNamed
from services.contribution.enums import PaidBy
from services.contribution.payments.models import (
    PaymentChannel,
    PaymentStatus,
    ReconciliationOutcome,
    RefundStatus,
)


class PaymentIn(BaseModel):
    """Open a payment of a declaration through a platform."""

    model_config = ConfigDict(extra="forbid")

    channel: PaymentChannel = Field(description="alipay (my.tradePay) or wechat (wx.requestPayment)")


class PaymentOut(BaseModel):
    """An opened payment and what the mini-program hands to the platform's pay sheet.

    Alipay: `trade_no` for `my.tradePay`. WeChat Pay: `timeStamp`, `nonceStr`,
    `package`, `signType`, `paySign` for `wx.requestPayment` (names as the platform spells them).
    """

    id: str
    declaration_id: str
    channel: PaymentChannel
    status: PaymentStatus
    amount_fen: int
    out_trade_no: str
    opened_at: datetime
    closes_at: datetime
    paid_by: PaidBy | None = None  # `family`: a bound relative's declaration; absent for one's own
    trade_no: str | None = None
    appId: str | None = None
    timeStamp: str | None = None
    nonceStr: str | None = None
    package: str | None = None
    signType: str | None = None
    paySign: str | None = None


class CertificateCheck(RegionNamed):
    """What anyone may learn from a certificate's verification code."""

    valid: bool
    code: str
    holder_name: str | None = Field(None, description="masked: the family name hidden")
    holder_id_masked: str | None = None
    category: str
    region_code: str
    months: list[str]
    amount_fen: int
    channel: PaymentChannel
    paid_at: datetime
    revoked: bool = False


class PaymentRecord(BaseModel):
    """A payment as staff see it: status, why it is flagged, amounts, platform references."""

    id: str
    declaration_id: str
    channel: PaymentChannel
    status: PaymentStatus
    flag: str | None = None
    amount_fen: int
    paid_amount_fen: int | None = None
    out_trade_no: str
    platform_trade_no: str | None = None
    opened_at: datetime
    closes_at: datetime
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    certificate_code: str | None = None


class PaymentPage(Page[PaymentRecord]):
    pass


class RefundIn(BaseModel):
    """Refund a payment: why (kept in the audit log and sent to the platform)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=80, description="shown to the payer by the platform")


class RefundOut(BaseModel):
    """A refund of a payment. `status`: processing, succeeded, failed or abnormal."""

    id: str
    payment_id: str
    channel: PaymentChannel
    status: RefundStatus
    amount_fen: int
    out_refund_no: str
    reason: str
    uncredit: bool = Field(description="the payment had been credited: its months are uncredited when the refund succeeds")
    requested_at: datetime
    finished_at: datetime | None = None
    platform_refund_no: str | None = None


class ReconciliationIn(BaseModel):
    """Reconcile a day (Asia/Shanghai, before today) on a channel."""

    model_config = ConfigDict(extra="forbid")

    date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD, a day before today")
    channel: PaymentChannel


class ReconciliationItemOut(BaseModel):
    """A trade or refund of the day: `outcome` matched, ours_only, theirs_only, amount_differs or status_differs;
    `resolution` what was done or found (credited after a query, unknown_order, ...)."""

    kind: str = Field(description="trade or refund")
    outcome: ReconciliationOutcome
    out_trade_no: str
    out_refund_no: str | None = None
    platform_no: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    ours_fen: int | None = None
    theirs_fen: int | None = None
    ours_status: str | None = None
    theirs_status: str | None = None
    resolution: str | None = None


class ReconciliationOut(BaseModel):
    """A day's reconciliation on a channel: counts per outcome and one page of items (by number)."""

    date: str
    channel: PaymentChannel
    counts: dict[str, int]
    bill_rows: int
    runs: int
    first_run_at: datetime
    last_run_at: datetime
    items: list[ReconciliationItemOut]
    next_cursor: str | None = None
