"""Refusals the gateway answers itself (problem+json through the kernel's renderer)."""

from __future__ import annotations

from services.common.errors import DomainError


class TokenError(DomainError):
    """A presented platform token was refused (every subclass is a 401)."""

    status = 401
    code = "token_invalid"
    title_zh = "登录凭证无效，请重新登录"
    title_en = "Invalid token: sign in again"

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{self.code}"'})
        super().__init__(**kwargs)  # type: ignore[arg-type]


class TokenInvalid(TokenError):
    code = "token_invalid"


class TokenTooLarge(TokenError):
    code = "token_too_large"
    title_zh = "登录凭证过大"
    title_en = "Token too large"


class TokenExpired(TokenError):
    code = "token_expired"
    title_zh = "登录已过期，请重新登录"
    title_en = "Token expired: sign in again"


class TokenNotYetValid(TokenError):
    code = "token_not_yet_valid"
    title_zh = "登录凭证尚未生效"
    title_en = "Token not yet valid"


class IssuerUntrusted(TokenError):
    code = "issuer_untrusted"
    title_zh = "不受信任的凭证签发方"
    title_en = "Token issuer not trusted"


class AudienceInvalid(TokenError):
    code = "audience_invalid"
    title_zh = "登录凭证不适用于本系统"
    title_en = "Token audience is not this system"


class AlgorithmNotAllowed(TokenError):
    code = "algorithm_not_allowed"
    title_zh = "登录凭证签名算法不被接受"
    title_en = "Token signing algorithm not allowed for this issuer"


class SigningKeyUnknown(TokenError):
    code = "signing_key_unknown"
    title_zh = "登录凭证签名密钥未知"
    title_en = "Token signing key unknown"


class SignatureInvalid(TokenError):
    code = "signature_invalid"
    title_zh = "登录凭证签名无效"
    title_en = "Token signature invalid"


class ClaimMissing(TokenError):
    code = "token_claim_missing"
    title_zh = "登录凭证缺少必要信息"
    title_en = "Token lacks a required claim"


class ClaimInvalid(TokenError):
    code = "token_claim_invalid"
    title_zh = "登录凭证中的信息无效"
    title_en = "Token carries an invalid claim"


class KindNotAllowedForIssuer(TokenError):
    code = "kind_not_allowed_for_issuer"
    title_zh = "该签发方无权签发此类身份"
    title_en = "This issuer may not issue this kind of principal"


class IssuerKeysUnavailable(DomainError):
    status = 503
    code = "issuer_keys_unavailable"
    title_zh = "暂时无法验证登录凭证，请稍后再试"
    title_en = "The issuer's keys cannot be fetched now; try again later"
    # A transient failure on our side, not the caller's: 503 so clients retry instead of signing out.


class RouteNotFound(DomainError):
    status = 404
    code = "not_found"
    title_zh = "资源不存在"
    title_en = "Not found"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title_zh = "请求体过大"
    title_en = "Payload too large"


class RequestTimeout(DomainError):
    status = 408
    code = "request_timeout"
    title_zh = "请求发送超时，请重试"
    title_en = "The request body did not arrive in time"
    # The client's doing, not a service's: answered by the gateway before any service is contacted.

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("headers", {"Connection": "close"})  # the rest of the body may still be on its way
        super().__init__(**kwargs)  # type: ignore[arg-type]


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    title_zh = "请求过于频繁，请稍后再试"
    title_en = "Too many requests: slow down"


class UpstreamUnavailable(DomainError):
    status = 503
    code = "upstream_unavailable"
    title_zh = "服务暂不可用，请稍后再试"
    title_en = "Service unavailable, try again later"


class UpstreamTimeout(DomainError):
    status = 504
    code = "upstream_timeout"
    title_zh = "服务响应超时，请稍后再试"
    title_en = "The service took too long to answer"


class NotReady(DomainError):
    status = 503
    code = "not_ready"
    title_zh = "服务暂不可用"
    title_en = "Service not ready"


class MetricsForbidden(DomainError):
    status = 403
    code = "metrics_forbidden"
    title_zh = "无权读取运行指标"
    title_en = "Metrics are for the monitoring network or a holder of the metrics token"
