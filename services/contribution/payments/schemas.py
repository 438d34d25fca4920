"""Public shapes of payments and certificates."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.common.regions import RegionNamed
from services.contribution.payments.models import PaymentChannel, PaymentStatus


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


class PaymentPage(BaseModel):
    items: list[PaymentRecord]
    next_cursor: str | None = None
