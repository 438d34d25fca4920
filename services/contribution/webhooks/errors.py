"""Refusals of the webhook routes (stable codes, bilingual titles)."""

from services.common.errors import DomainError


class WebhookUrlInvalid(DomainError):
    status = 422
    code = "webhook_url_invalid"
    title_zh = "回调地址无效"
    title_en = "Invalid webhook URL"


class WebhookUrlForbidden(DomainError):
    status = 422
    code = "webhook_url_forbidden"
    title_zh = "回调地址不被允许：只接受 https，且不能指向本机、内网、链路本地、运营商级NAT、组播或云元数据地址"
    title_en = ("Webhook URL not allowed: https only, and never a loopback, private, link-local, CGNAT, multicast, "
                "unspecified or cloud-metadata address")


class WebhookEventUnknown(DomainError):
    status = 422
    code = "webhook_event_unknown"
    title_zh = "不支持的事件类型"
    title_en = "Unknown event type"


class WebhookNotFound(DomainError):
    status = 404
    code = "webhook_not_found"
    title_zh = "本单位尚未设置回调地址"
    title_en = "No webhook endpoint for this unit"


class WebhookDeliveryNotFound(DomainError):
    status = 404
    code = "webhook_delivery_not_found"
    title_zh = "投递记录不存在"
    title_en = "Webhook delivery not found"


class WebhookDisabled(DomainError):
    status = 409
    code = "webhook_disabled"
    title_zh = "回调地址已因连续失败被停用，请先重新设置（PUT）"
    title_en = "The webhook endpoint is disabled after failing; set it again (PUT) first"
