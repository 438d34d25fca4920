"""The message side of the sandbox: WeChat subscription messages and Alipay mini-program template messages.

WeChat: `GET /sandbox/wechat/cgi-bin/token` and `POST /sandbox/wechat/cgi-bin/stable_token`
(appid and AppSecret -> access_token, 7200 s), `POST
/sandbox/wechat/cgi-bin/message/subscribe/send?access_token=...` (touser, template_id, page,
data {key: {value}}, miniprogram_state, lang), answering `{errcode, errmsg, msgid}` with the
platform's codes: 40001 bad token, 40003 no touser, 40037 unknown template, 41030 bad page,
47003 a field missing, unknown or over its type's limit (thing <= 20 characters,
character_string <= 32 ASCII, number <= 32 digits, letter <= 32, symbol <= 5, phrase <= 5,
name <= 10 Chinese or 20 characters, phone_number <= 17, car_number <= 8, amount, date,
time).

Alipay: `alipay.open.app.mini.templatemessage.send` on the sandbox's gateway
(`POST /sandbox/alipay/gateway.do`, RSA2-verified there), biz_content {to_user_id or
to_open_id, user_template_id, page, data (a JSON text {keywordN: {value}})}.

Every accepted message is recorded; `GET /sandbox/messages` lists them (filters: touser,
to_user_id, template, platform). State is in memory.

Settings (environment): SANDBOX_WECHAT_APPS (JSON {appid: secret}; default the development
app `wx0000000000000001` with $SOCIALSEC_VAR_DIR/keys/wechat-app.secret),
SANDBOX_MESSAGE_TEMPLATES (JSON {template id: {"platform": "wechat", "fields": [keys]} or
{"platform": "alipay", "keywords": n}}; default the templates below),
SANDBOX_ALIPAY_KEYWORD_MAX (characters in a keyword value, default 20).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from sandbox.payments import ALIPAY_METHODS, CST, SandboxPayments
from sandbox.payments import state as payments_state

router = APIRouter(tags=["sandbox messages"])

DEFAULT_APPID = "wx0000000000000001"
TOKEN_SECONDS = 7200

# The templates an operator would have picked in the platforms' consoles, by the ids the services default to.
_WECHAT_FIELDS = {
    "certification-due": ["thing1", "date2", "thing3"],
    "certification-overdue": ["thing1", "date2", "thing3"],
    "declaration-expiring": ["thing1", "character_string2", "time3", "thing4"],
    "flexible-payment-due": ["thing1", "character_string2", "date3", "thing4"],
    "card-locked": ["thing1", "character_string2", "time3", "thing4"],
    "card-made": ["thing1", "character_string2", "thing3", "thing4"],
}
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    **{f"wx-tmpl-{k}": {"platform": "wechat", "fields": v} for k, v in _WECHAT_FIELDS.items()},
    **{f"ali-tmpl-{k}": {"platform": "alipay", "keywords": len(v)} for k, v in _WECHAT_FIELDS.items()},
}

_CHINESE = r"[\u4e00-\u9fff]"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "number": re.compile(r"^\d{1,32}(\.\d+)?$"),
    "letter": re.compile(r"^[A-Za-z]{1,32}$"),
    "symbol": re.compile(r"^[^\w\s]{1,5}$"),
    "character_string": re.compile(r"^[\x21-\x7e]{1,32}$"),
    "time": re.compile(
        r"^((\d{4}年\d{1,2}月\d{1,2}日 )?\d{1,2}:\d{2}|\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?)"
        r"(~((\d{4}年\d{1,2}月\d{1,2}日 )?\d{1,2}:\d{2}|\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?))?$"
    ),
    "date": re.compile(r"^(\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{2}-\d{2})(~(\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{2}-\d{2}))?$"),
    "amount": re.compile(r"^[¥￥$]?\d{1,10}(\.\d{1,2})?元?$"),
    "phone_number": re.compile(r"^[\d+\-]{1,17}$"),
    "car_number": re.compile(r"^.{1,8}$"),
    "phrase": re.compile(rf"^{_CHINESE}{{1,5}}$"),
}


def field_type(key: str) -> str:
    """`thing1` -> `thing`, `character_string2` -> `character_string`."""
    return key.rstrip("0123456789")


def value_fits(key: str, value: str) -> bool:
    """Whether a value fits its WeChat field type's published rule."""
    kind = field_type(key)
    if not value:
        return False
    if kind == "thing":
        return len(value) <= 20
    if kind == "name":
        return len(value) <= (10 if re.search(_CHINESE, value) else 20)
    pattern = _PATTERNS.get(kind)
    return bool(pattern.match(value)) if pattern is not None else len(value) <= 20


class SandboxMessages:
    """Apps, access tokens, templates and the messages sent."""

    def __init__(
        self, *, apps: dict[str, str], templates: dict[str, dict[str, Any]] | None = None,
        alipay_keyword_max: int = 20, now: Any = time.time,
    ) -> None:
        self.apps = apps
        self.templates = templates if templates is not None else dict(DEFAULT_TEMPLATES)
        self.alipay_keyword_max = alipay_keyword_max
        self.now = now
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, expires)
        self.stable: dict[str, str] = {}  # appid -> its stable token
        self.sent: list[dict[str, Any]] = []

    @classmethod
    def from_env(cls, keys_dir: Path | None = None) -> SandboxMessages:
        keys = keys_dir or Path(os.environ.get("SOCIALSEC_VAR_DIR", "var")) / "keys"
        raw_apps = os.environ.get("SANDBOX_WECHAT_APPS", "").strip()
        if raw_apps:
            apps = {str(k): str(v) for k, v in json.loads(raw_apps).items()}
        else:
            secret_file = keys / "wechat-app.secret"
            apps = {DEFAULT_APPID: secret_file.read_text().strip()} if secret_file.exists() else {}
        raw_templates = os.environ.get("SANDBOX_MESSAGE_TEMPLATES", "").strip()
        return cls(
            apps=apps, templates=json.loads(raw_templates) if raw_templates else None,
            alipay_keyword_max=int(os.environ.get("SANDBOX_ALIPAY_KEYWORD_MAX", "20")),
        )

    def issue_token(self, appid: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(48)
        self.tokens[token] = (appid, self.now() + TOKEN_SECONDS)
        return {"access_token": token, "expires_in": TOKEN_SECONDS}

    def token_app(self, token: str) -> str | None:
        found = self.tokens.get(token)
        if found is None or found[1] <= self.now():
            return None
        return found[0]

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry["id"] = len(self.sent) + 1
        entry["sent_at"] = datetime.fromtimestamp(self.now(), CST).isoformat(timespec="seconds")
        self.sent.append(entry)
        return entry


def messages_of(pay: SandboxPayments) -> SandboxMessages:
    """The message state kept beside the payment state (the Alipay gateway dispatches with the latter)."""
    st: SandboxMessages | None = getattr(pay, "messages", None)
    if st is None:
        st = SandboxMessages.from_env(pay.keys_dir)
        pay.messages = st  # type: ignore[attr-defined]
    return st


def state(request: Request) -> SandboxMessages:
    """The sandbox's message state (`app.state.sandbox_messages` when given, else created on first use)."""
    pay = payments_state(request)
    given: SandboxMessages | None = getattr(request.app.state, "sandbox_messages", None)
    if given is not None:
        pay.messages = given  # type: ignore[attr-defined]
        return given
    return messages_of(pay)


def _wechat_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": message})


def _text(value: object) -> str | None:
    """A JSON member that must be a string (anything else counts as absent)."""
    return value if isinstance(value, str) else None


def _credential_check(st: SandboxMessages, grant_type: str | None, appid: str | None, secret: str | None) -> JSONResponse | None:
    if grant_type != "client_credential":
        return _wechat_error(40002, "invalid grant_type")
    if not appid or appid not in st.apps:
        return _wechat_error(40013, "invalid appid")
    if not secret or not secrets.compare_digest(secret.encode(), st.apps[appid].encode()):
        return _wechat_error(40125, "invalid appsecret")
    return None


@router.get("/sandbox/wechat/cgi-bin/token", summary="WeChat access token (getAccessToken)")
async def wechat_token(
    request: Request, grant_type: str | None = None, appid: str | None = None, secret: str | None = None,
) -> Response:
    st = state(request)
    refused = _credential_check(st, grant_type, appid, secret)
    if refused is not None:
        return refused
    assert appid is not None
    return JSONResponse(st.issue_token(appid))


@router.post("/sandbox/wechat/cgi-bin/stable_token", summary="WeChat stable access token (getStableAccessToken)")
async def wechat_stable_token(request: Request) -> Response:
    st = state(request)
    try:
        body = json.loads(await request.body())
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        return _wechat_error(40001, "invalid request body")
    appid, grant_type, secret = (_text(body.get(k)) for k in ("appid", "grant_type", "secret"))
    refused = _credential_check(st, grant_type, appid, secret)
    if refused is not None or appid is None:
        return refused or _wechat_error(40013, "invalid appid")
    current = st.stable.get(appid)
    if current is None or body.get("force_refresh") is True or st.token_app(current) is None:
        answer = st.issue_token(appid)
        st.stable[appid] = answer["access_token"]
        return JSONResponse(answer)
    return JSONResponse({"access_token": current, "expires_in": int(st.tokens[current][1] - st.now())})


@router.post("/sandbox/wechat/cgi-bin/message/subscribe/send", summary="WeChat subscribeMessage.send")
async def wechat_subscribe_send(request: Request, access_token: str | None = Query(default=None)) -> Response:
    st = state(request)
    appid = st.token_app(access_token or "")
    if appid is None:
        return _wechat_error(40001, "invalid credential, access_token is invalid or not latest")
    try:
        body = json.loads(await request.body())
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        return _wechat_error(47001, "data format error")
    touser, template_id, page, data = body.get("touser"), body.get("template_id"), body.get("page"), body.get("data")
    if not isinstance(touser, str) or not touser:
        return _wechat_error(40003, "invalid openid")
    template = st.templates.get(template_id) if isinstance(template_id, str) else None
    if template is None or template.get("platform") != "wechat":
        return _wechat_error(40037, "invalid template_id")
    if page is not None and (not isinstance(page, str) or "://" in page or len(page) > 1024):
        return _wechat_error(41030, "invalid page")
    if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
        return _wechat_error(47003, "argument invalid! miniprogram_state")
    if not isinstance(data, dict) or set(data) != set(template["fields"]):
        return _wechat_error(47003, "argument invalid! data does not match the template's fields")
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str) or not value_fits(key, value):
            return _wechat_error(47003, f"argument invalid! data.{key}.value invalid")
    msgid = int(st.now() * 1000) * 1000 + len(st.sent) + 1
    st.record({
        "platform": "wechat", "appid": appid, "touser": touser, "template_id": template_id, "page": page or "",
        "data": data, "miniprogram_state": body.get("miniprogram_state", "formal"), "msgid": str(msgid),
    })
    return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})


NODE = "alipay_open_app_mini_templatemessage_send_response"


async def alipay_template_message(pay: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    """`alipay.open.app.mini.templatemessage.send` (the gateway has verified the signature)."""
    st = messages_of(pay)

    def refuse(code: str, msg: str, sub_code: str, sub_msg: str) -> Response:
        return pay.alipay_response({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}, node_name=NODE)

    try:
        biz = json.loads(params.get("biz_content", ""))
        assert isinstance(biz, dict)
    except (ValueError, AssertionError):
        return refuse("40002", "Invalid Arguments", "isv.invalid-biz-content", "biz_content 格式错误")
    to_user = biz.get("to_user_id") or biz.get("to_open_id")
    template_id = biz.get("user_template_id")
    if not params.get("app_id") or not isinstance(to_user, str) or not to_user or not isinstance(template_id, str):
        return refuse("40002", "Invalid Arguments", "isv.missing-parameter", "缺少必选参数")
    template = st.templates.get(template_id)
    if template is None or template.get("platform") != "alipay":
        return refuse("40004", "Business Failed", "USER_TEMPLATE_ILLEGAL", "模板不存在或不可用")
    page = biz.get("page")
    if page is not None and (not isinstance(page, str) or "://" in page):
        return refuse("40004", "Business Failed", "PAGE_ILLEGAL", "页面地址不合法")
    try:
        data = json.loads(biz.get("data") or "")
        assert isinstance(data, dict)
    except (ValueError, AssertionError, TypeError):
        return refuse("40004", "Business Failed", "DATA_ILLEGAL", "模板数据格式错误")
    expected = {f"keyword{i}" for i in range(1, int(template["keywords"]) + 1)}
    if set(data) != expected:
        return refuse("40004", "Business Failed", "DATA_ILLEGAL", "模板数据与模板关键词不一致")
    for item in data.values():
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str) or not value or len(value) > st.alipay_keyword_max:
            return refuse("40004", "Business Failed", "DATA_ILLEGAL", "模板关键词内容不合法")
    st.record({
        "platform": "alipay", "app_id": params["app_id"], "to_user_id": to_user, "template_id": template_id,
        "page": page or "", "data": data,
    })
    return pay.alipay_response({"code": "10000", "msg": "Success"}, node_name=NODE)


ALIPAY_METHODS["alipay.open.app.mini.templatemessage.send"] = alipay_template_message


@router.get("/sandbox/messages", summary="The messages the platforms accepted (sandbox only)")
async def sent_messages(
    request: Request,
    touser: str | None = Query(default=None, max_length=128, description="WeChat openid"),
    to_user_id: str | None = Query(default=None, max_length=128, description="Alipay user id (or open id)"),
    template: str | None = Query(default=None, max_length=128, description="template id"),
    platform: str | None = Query(default=None, pattern="^(wechat|alipay)$"),
) -> dict[str, Any]:
    st = state(request)
    items = [
        m for m in st.sent
        if (touser is None or m.get("touser") == touser)
        and (to_user_id is None or m.get("to_user_id") == to_user_id)
        and (template is None or m.get("template_id") == template)
        and (platform is None or m.get("platform") == platform)
    ]
    return {"items": items}

