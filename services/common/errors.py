"""RFC 9457 problem+json for every error a service answers.

Domain errors are classes carrying their HTTP status and stable code; one set of
handlers renders them, pydantic validation errors, unknown routes and unexpected
failures. Messages are Chinese by default and English with `Accept-Language: en`.
No stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.context import request_id_var

log = logging.getLogger("socialsec.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://socialsec.example/problems/"

# The problem document as every service and the gateway render it (`problem_response`),
# as it appears under components/schemas/Problem in every OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem document; `code` is stable, `title` and `detail` are Chinese by default "
    "and English with `Accept-Language: en`. Some problems add members of their own (e.g. `tries_left`).",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "per-field errors (input values are never echoed)",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "in": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "request_id": {"type": ["string", "null"]},
    },
    "required": ["type", "title", "status", "code"],
}
PROBLEM_REF = "#/components/schemas/Problem"


def problem_content() -> dict[str, Any]:
    """An OpenAPI `content` member for a problem answer."""
    return {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}


class DomainError(Exception):
    """A refusal the caller can act on: HTTP status, stable code, bilingual title."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title_zh: ClassVar[str] = "请求无效"
    title_en: ClassVar[str] = "Bad request"
    # The producer whose events this refusal is read from (a read model), if any:
    # such a refusal may only mean the latest events are not applied yet, and
    # `events.ReadModelRoute` retries it once after catching up.
    read_model: ClassVar[str | None] = None
    # A refusal whose bookkeeping (failed tries, lockouts, audit rows) must be kept:
    # the request's transaction commits with it instead of rolling back, and an
    # Idempotency-Key it claimed is released (a refusal is answered, not stored).
    keeps_changes: ClassVar[bool] = False

    def __init__(
        self,
        *,
        detail_zh: str | None = None,
        detail_en: str | None = None,
        params: dict[str, Any] | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(self.code)
        self.detail_zh = detail_zh
        self.detail_en = detail_en
        self.params = dict(params or {})
        self.errors = list(errors or [])
        self.headers = dict(headers or {})


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title_zh = "资源不存在"
    title_en = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title_zh = "与当前状态冲突"
    title_en = "Conflict with the current state"


class ValidationFailed(DomainError):
    status = 422
    code = "validation_failed"
    title_zh = "提交的数据有误"
    title_en = "The submitted data is invalid"


class MalformedBody(DomainError):
    status = 400
    code = "malformed_body"
    title_zh = "请求体格式错误"
    title_en = "Malformed request body"


class InternalError(DomainError):
    status = 500
    code = "internal_error"
    title_zh = "系统繁忙，请稍后再试"
    title_en = "Internal error, please try again later"


def wants_english(request: Request) -> bool:
    """True when the caller prefers English over Chinese in Accept-Language."""
    header = request.headers.get("accept-language", "")
    best_lang, best_q = "zh", 0.0
    for part in header.split(","):
        bits = part.strip().split(";")
        lang = bits[0].strip().lower()
        if not lang:
            continue
        q = 1.0
        for b in bits[1:]:
            b = b.strip()
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        primary = lang.split("-")[0]
        if primary in ("zh", "en") and q > best_q:
            best_lang, best_q = primary, q
    return best_lang == "en"


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    errors: Sequence[dict[str, Any]] = (),
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Render one problem document."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        "errors": list(errors),
        "request_id": request_id_var.get(),
    }
    for k, v in (extra or {}).items():
        body.setdefault(k, v)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def render_domain_error(request: Request, exc: DomainError) -> JSONResponse:
    """Render a DomainError in the caller's language."""
    en = wants_english(request)
    title = exc.title_en if en else exc.title_zh
    detail = (exc.detail_en if en else exc.detail_zh) or title
    errors = []
    for e in exc.errors:
        e = dict(e)
        msg_en = e.pop("message_en", None)
        msg_zh = e.pop("message_zh", None)
        if "message" not in e:
            e["message"] = (msg_en if en else msg_zh) or msg_en or msg_zh or ""
        errors.append(e)
    return problem_response(
        request, status=exc.status, code=exc.code, title=title, detail=detail, errors=errors,
        extra=exc.params, headers=exc.headers or None,
    )


# Chinese wording for the pydantic error types callers meet most.
_ZH = {
    "missing": "必填字段缺失",
    "string_type": "应为字符串",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "bool_type": "应为布尔值",
    "bool_parsing": "应为布尔值",
    "list_type": "应为数组",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "enum": "不是允许的取值",
    "literal_error": "不是允许的取值",
    "string_too_long": "内容过长",
    "string_too_short": "内容过短",
    "too_long": "条目过多",
    "too_short": "条目过少",
    "string_pattern_mismatch": "格式不正确",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "date_parsing": "日期格式不正确",
    "date_from_datetime_parsing": "日期格式不正确",
    "date_type": "日期格式不正确",
    "datetime_parsing": "时间格式不正确",
    "extra_forbidden": "不允许的字段",
    "int_from_float": "应为整数（金额以分为单位）",
    "float_type": "应为数字",
    "json_invalid": "JSON 格式错误",
    "value_error": "取值无效",
    "uuid_parsing": "应为 UUID",
    "uuid_type": "应为 UUID",
}

# Custom error types raised by our own validators become the top-level code.
DOMAIN_VALIDATION_CODES: set[str] = set()


def register_validation_code(code: str, zh: str) -> None:
    """Declare a custom pydantic error type that should surface as the problem's code."""
    DOMAIN_VALIDATION_CODES.add(code)
    _ZH[code] = zh


def validation_errors(exc_errors: Sequence[Any], en: bool) -> list[dict[str, Any]]:
    """Per-field errors from pydantic's error list (no input values echoed: they may be PII)."""
    out = []
    for err in exc_errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            where, rest = loc[0], loc[1:]
        else:
            where, rest = "body", loc
        field = ".".join(rest) if rest else where
        typ = err.get("type", "value_error")
        msg = err.get("msg", "") if en else _ZH.get(typ, "取值无效")
        if not en and typ in DOMAIN_VALIDATION_CODES:
            msg = _ZH[typ]
        out.append({"field": field, "in": where, "code": typ, "message": msg})
    return out


async def _handle_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if exc.status >= 500:
        log.error("domain error %s", exc.code)
    return render_domain_error(request, exc)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return render_validation_errors(request, list(exc.errors()))


def render_validation_errors(request: Request, raw: list[Any]) -> JSONResponse:
    """Render pydantic's error list: 400 malformed_body for bad JSON, else 422 with per-field errors."""
    en = wants_english(request)
    if any(e.get("type") == "json_invalid" for e in raw):
        err = MalformedBody()
        return problem_response(
            request, status=400, code=err.code, title=err.title_en if en else err.title_zh,
            errors=validation_errors([e for e in raw if e.get("type") == "json_invalid"], en),
        )
    errors = validation_errors(raw, en)
    code = ValidationFailed.code
    for e in errors:
        if e["code"] in DOMAIN_VALIDATION_CODES:
            code = e["code"]
            break
    title = ValidationFailed.title_en if en else ValidationFailed.title_zh
    return problem_response(request, status=422, code=code, title=title, errors=errors)


_HTTP_CODES = {
    400: ("bad_request", "请求无效", "Bad request"),
    401: ("principal_required", "需要登录", "Authentication required"),
    403: ("forbidden", "无权访问", "Forbidden"),
    404: ("not_found", "资源不存在", "Not found"),
    405: ("method_not_allowed", "不支持该请求方法", "Method not allowed"),
    406: ("not_acceptable", "无法提供所需格式", "Not acceptable"),
    413: ("payload_too_large", "请求体过大", "Payload too large"),
    415: ("unsupported_media_type", "不支持的内容类型", "Unsupported media type"),
}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path.

    The router's own 405 names the methods of the first route whose path matched only;
    `GET /x` and `POST /x` are two routes, and `Allow` must list both.
    """
    from fastapi.routing import iter_route_contexts

    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(list(request.app.routes)):
        regex = getattr(route, "path_regex", None)
        route_methods = getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return sorted(methods)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    en = wants_english(request)
    code, zh, en_title = _HTTP_CODES.get(exc.status_code, ("http_error", "请求失败", "Request failed"))
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        allow = allowed_methods(request)
        if allow:
            headers["Allow"] = ", ".join(allow)
    return problem_response(
        request, status=exc.status_code, code=code, title=en_title if en else zh, headers=headers or None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(DomainError, _handle_domain)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # Unexpected exceptions are answered by RequestContextMiddleware (500 problem, logged).
