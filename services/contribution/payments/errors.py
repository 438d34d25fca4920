"""Refusals of the payment routes (stable codes, bilingual titles)."""

from services.common.errors import DomainError


class PaymentAlreadyOpen(DomainError):
    status = 409
    code = "payment_already_open"
    title_zh = "该申报已有一笔进行中的其他渠道支付，请完成或稍后再试"
    title_en = "Another payment of this declaration is open on another channel"
    # Opening a payment commits before calling the platform: a refusal after that commit must
    # commit too, so the Idempotency-Key claim is released (before it, nothing else is kept
    # but the closing of a payment past its time).
    keeps_changes = True


class ChannelNotAvailable(DomainError):
    status = 422
    code = "channel_not_available"
    title_zh = "当前平台不支持该支付渠道"
    title_en = "This payment channel is not available on the calling platform"


class NothingToPay(DomainError):
    status = 422
    code = "nothing_to_pay"
    title_zh = "该申报无需缴费"
    title_en = "Nothing to pay on this declaration"


class PaymentPlatformUnavailable(DomainError):
    status = 502
    code = "payment_platform_unavailable"
    # The payment committed before the platform call is closed with this refusal: that must
    # commit too, and the Idempotency-Key claim is released, so the same key can try again.
    keeps_changes = True
    title_zh = "支付平台暂不可用，请稍后再试"
    title_en = "The payment platform is unavailable, please try again later"


class PaymentNotFound(DomainError):
    status = 404
    code = "payment_not_found"
    title_zh = "支付记录不存在"
    title_en = "Payment not found"


class CertificateNotAvailable(DomainError):
    status = 409
    code = "certificate_not_available"
    title_zh = "支付尚未完成，暂无缴费凭证"
    title_en = "No certificate: the payment is not credited"


class CertificateNotFound(DomainError):
    status = 404
    code = "certificate_not_found"
    title_zh = "凭证不存在或验证码错误"
    title_en = "No certificate with this verification code"


class PaymentNotRefundable(DomainError):
    status = 409
    code = "payment_not_refundable"
    title_zh = "该笔支付当前不能退款"
    title_en = "This payment cannot be refunded in its current state"


class RefundExceedsPayment(DomainError):
    status = 409
    code = "refund_exceeds_payment"
    title_zh = "退款金额不能超过该笔支付的金额，该笔支付已全部退款或正在退款"
    title_en = "A refund cannot exceed the payment: it is already refunded or being refunded in full"


class ReconciliationDateInvalid(DomainError):
    status = 422
    code = "reconciliation_date_invalid"
    title_zh = "对账日期无效：只能核对今天之前的日期（北京时间）"
    title_en = "Reconciliation date invalid: only days before today (Asia/Shanghai) have a bill"


class ReconciliationNotFound(DomainError):
    status = 404
    code = "reconciliation_not_found"
    title_zh = "该日期和渠道尚未对账"
    title_en = "No reconciliation for this date and channel"


class BillUnavailable(DomainError):
    status = 502
    code = "bill_unavailable"
    title_zh = "暂时无法从支付平台获取对账单，请稍后再试"
    title_en = "The platform's bill could not be fetched, please try again later"
    keeps_changes = True
