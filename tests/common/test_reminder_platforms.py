"""The platforms' message APIs as the sandbox checks them, and the kernel's clients for both."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sandbox.messages import DEFAULT_APPID, SandboxMessages, value_fits
from sandbox.messages import router as messages_router
from sandbox.payments import SandboxPayments
from sandbox.payments import router as payments_router
from services.common.reminders import MessagePlatforms, ReminderSettings, clip, message
from services.common.settings import CommonSettings
from tests.conftest import KEYS

SECRET = (Path(KEYS) / "wechat-app.secret").read_text().strip()
WX = "/sandbox/wechat/cgi-bin"
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
async def sandbox() -> Any:
    app = FastAPI()
    app.include_router(payments_router)
    app.include_router(messages_router)
    pay = SandboxPayments(keys_dir=Path(KEYS))
    messages = SandboxMessages(apps={DEFAULT_APPID: SECRET})
    app.state.sandbox_payments = pay
    app.state.sandbox_messages = messages
    pay.messages = messages  # type: ignore[attr-defined]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
    yield SimpleNamespace(client=client, messages=messages)
    await client.aclose()


def platforms(client: httpx.AsyncClient) -> MessagePlatforms:
    settings = ReminderSettings(
        wechat_api_url="http://sandbox/sandbox/wechat", alipay_gateway_url="http://sandbox/sandbox/alipay/gateway.do",
    )
    return MessagePlatforms(settings, CommonSettings(var_dir=Path(KEYS).parent), client=client)


def row(platform: str, template_id: str, fields: list[list[str]], touser: str = "o-user-1") -> Any:
    return SimpleNamespace(platform=platform, touser=touser, template_id=template_id, page="pages/card/index",
                           fields=fields, kind="card_made")


CARD_MADE = [["thing1", "社保卡已制卡"], ["character_string2", "J******78"], ["thing3", "中国工商银行"],
             ["thing4", "请到发卡银行网点领取并激活"]]


async def token(client: httpx.AsyncClient) -> str:
    r = await client.get(f"{WX}/token", params={"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": SECRET})
    return str(r.json()["access_token"])


async def test_wechat_token_checks_the_app(sandbox: Any) -> None:
    c = sandbox.client
    r = await c.get(f"{WX}/token", params={"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": "x"})
    assert r.json()["errcode"] == 40125
    r = await c.get(f"{WX}/token", params={"grant_type": "client_credential", "appid": "wx-other", "secret": SECRET})
    assert r.json()["errcode"] == 40013
    body = {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": SECRET}
    first = (await c.post(f"{WX}/stable_token", json=body)).json()
    assert first["expires_in"] == 7200
    assert (await c.post(f"{WX}/stable_token", json=body)).json()["access_token"] == first["access_token"]
    forced = (await c.post(f"{WX}/stable_token", json={**body, "force_refresh": True})).json()
    assert forced["access_token"] != first["access_token"]


async def test_wechat_send_checks_token_template_and_field_limits(sandbox: Any) -> None:
    c = sandbox.client
    send = f"{WX}/message/subscribe/send"
    body: dict[str, Any] = {"touser": "o-user-1", "template_id": "wx-tmpl-card-made", "page": "pages/card/index",
                            "data": {k: {"value": v} for k, v in CARD_MADE}}
    assert (await c.post(send, params={"access_token": "nope"}, json=body)).json()["errcode"] == 40001
    tok = await token(c)
    assert (await c.post(send, params={"access_token": tok}, json={**body, "template_id": "x"})).json()["errcode"] == 40037
    assert (await c.post(send, params={"access_token": tok}, json={**body, "touser": ""})).json()["errcode"] == 40003
    too_long = {**body["data"], "thing1": {"value": "一" * 21}}
    assert (await c.post(send, params={"access_token": tok}, json={**body, "data": too_long})).json()["errcode"] == 47003
    chinese_code = {**body["data"], "character_string2": {"value": "卡号J1"}}
    r = await c.post(send, params={"access_token": tok}, json={**body, "data": chinese_code})
    assert r.json()["errcode"] == 47003
    missing = {k: v for k, v in body["data"].items() if k != "thing4"}
    assert (await c.post(send, params={"access_token": tok}, json={**body, "data": missing})).json()["errcode"] == 47003
    assert sandbox.messages.sent == []
    ok = (await c.post(send, params={"access_token": tok}, json=body)).json()
    assert ok["errcode"] == 0 and ok["msgid"]
    listed = (await c.get("/sandbox/messages", params={"touser": "o-user-1", "template": "wx-tmpl-card-made"})).json()
    assert len(listed["items"]) == 1 and listed["items"][0]["appid"] == DEFAULT_APPID
    assert (await c.get("/sandbox/messages", params={"touser": "someone-else"})).json()["items"] == []


def test_field_types() -> None:
    assert value_fits("thing1", "一" * 20) and not value_fits("thing1", "一" * 21) and not value_fits("thing1", "")
    assert value_fits("date2", "2026年5月1日") and value_fits("date2", "2026-05-01") and not value_fits("date2", "明天")
    assert value_fits("time3", "2026年3月11日 10:00") and not value_fits("time3", "上午十点")
    assert value_fits("amount1", "¥2100.00") and not value_fits("amount1", "¥21000000000.00")
    assert value_fits("phrase1", "已锁定") and not value_fits("phrase1", "已经被锁定了")
    assert clip("thing1", "一" * 30) == "一" * 19 + "…" and clip("date2", "x" * 30) == "x" * 30
    assert message("p", ("thing1", "一" * 25)).fields[0][1] == "一" * 19 + "…"


async def test_kernel_clients_send_through_both_platforms(sandbox: Any) -> None:
    p = platforms(sandbox.client)
    out = await p.send(row("wechat", "wx-tmpl-card-made", CARD_MADE), NOW)
    assert out.status == "sent" and out.msgid
    sandbox.messages.tokens.clear()  # the token was replaced (another process asked for one): fetched again
    assert (await p.send(row("wechat", "wx-tmpl-card-made", CARD_MADE), NOW)).status == "sent"
    out = await p.send(row("alipay", "ali-tmpl-card-made", CARD_MADE, touser="2088000000000042"), NOW)
    assert out.status == "sent", out
    alipay = sandbox.messages.sent[-1]
    assert alipay["to_user_id"] == "2088000000000042" and alipay["data"]["keyword3"] == {"value": "中国工商银行"}
    refused = await p.send(row("alipay", "ali-tmpl-card-made", CARD_MADE[:3]), NOW)
    assert refused.status == "failed" and "DATA_ILLEGAL" in refused.detail
    assert len(sandbox.messages.sent) == 3


async def test_alipay_gateway_checks_the_signature(sandbox: Any) -> None:
    biz = {"to_user_id": "2088000000000042", "user_template_id": "ali-tmpl-card-made", "page": "pages/card/index",
           "data": json.dumps({f"keyword{i}": {"value": "x"} for i in range(1, 5)})}
    params = {"app_id": "2021000100000001", "method": "alipay.open.app.mini.templatemessage.send", "format": "JSON",
              "charset": "utf-8", "sign_type": "RSA2", "timestamp": "2026-03-10 10:00:00", "version": "1.0",
              "biz_content": json.dumps(biz), "sign": "bm90IGEgc2lnbmF0dXJl"}
    r = await sandbox.client.post("/sandbox/alipay/gateway.do", data=params)
    assert "isv.invalid-signature" in r.text
    assert sandbox.messages.sent == []
