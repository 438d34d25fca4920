"""The sandbox's payment platforms: notifications signed as Alipay and WeChat Pay sign them, and retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI

from sandbox.payments import SandboxPayments
from sandbox.payments import router as sandbox_router
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.keys import load_public_key
from tests.conftest import KEYS
from tests.contribution.payments.test_platforms import alipay_config, wechat_config

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
async def platform() -> AsyncIterator[tuple[httpx.AsyncClient, SandboxPayments]]:
    app = FastAPI()
    app.include_router(sandbox_router)
    st = SandboxPayments(keys_dir=Path(KEYS), retry_seconds=0.001, now=lambda: NOW.timestamp())
    app.state.sandbox_payments = st
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        yield client, st


class TestSandboxNotifications:
    async def test_alipay_notification_is_signed_and_retried_until_success(self, platform: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, st = platform
        received: list[dict[str, str]] = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append(dict(parse_qsl(request.content.decode())))
            return httpx.Response(200, text="success" if len(received) >= 3 else "fail")

        st._client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
        created = await alipay.create_trade(
            alipay_config(), client, out_trade_no="P9", amount_fen=1230, subject="社会保险费", buyer_user_id="u1", now=NOW,
        )
        r = await client.post(f"/sandbox/alipay/trades/{created.trade_no}/pay")
        assert r.status_code == 200 and r.json()["trade_status"] == "TRADE_SUCCESS"
        await st.drain()
        assert len(received) == 3
        n = alipay.verify_notification(received[-1], public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))
        assert n.paid and n.total_amount == "12.30" and n.trade_no == created.trade_no
        assert (await client.get(f"/sandbox/alipay/trades/{created.trade_no}")).json()["notified"] is True

    async def test_wechat_notification_is_signed_encrypted_and_bounded(self, platform: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, st = platform
        received: list[tuple[bytes, dict[str, str]]] = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append((request.content, dict(request.headers)))
            return httpx.Response(500, json={"code": "FAIL", "message": "busy"})

        st._client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
        st.wechat_attempts = 4
        await wechatpay.jsapi_prepay(wechat_config(), client, out_trade_no="P8", amount_fen=1230, description="d", openid="o1",
                                     now=int(NOW.timestamp()))
        await client.post("/sandbox/wechatpay/transactions/P8/pay")
        await st.drain()
        assert len(received) == 4
        t = wechatpay.parse_notification(wechat_config(), headers=received[0][1], body=received[0][0], now=int(NOW.timestamp()))
        assert t.paid and t.total_fen == 1230 and t.out_trade_no == "P8"
        assert (await client.get("/sandbox/wechatpay/transactions/P8")).json()["notified"] is False
