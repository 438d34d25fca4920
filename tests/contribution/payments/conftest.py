"""Payment fixtures: the contribution service and the sandbox platforms wired to each other in-process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sandbox.payments import SandboxPayments
from sandbox.payments import router as sandbox_router
from services.common.clock import FrozenClock
from services.common.pii import id_hash
from services.contribution.models import Declaration, DeclarationLine, DeclaredMonth
from services.contribution.payments.platforms import PaymentPlatforms
from services.contribution.settings import Settings
from tests.conftest import KEYS
from tests.helpers import citizen, make_id_number

# 2026-03-10 10:00 in Shanghai.
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
ALICE = make_id_number("110105", "19900101", "001")
BOB = make_id_number("110105", "19850505", "013")


@dataclass
class PayWorld:
    svc: Any
    sandbox: httpx.AsyncClient
    platform: SandboxPayments
    settings: Settings

    @property
    def client(self) -> httpx.AsyncClient:
        return self.svc.client

    def headers(self, prn: dict[str, Any], key: str | None = None, **extra: str) -> dict[str, str]:
        h = self.svc.headers(prn, **extra)
        if key is not None:
            h["Idempotency-Key"] = key
        return h

    async def declaration(
        self, id_number: str = ALICE, *, months: tuple[str, ...] = ("2026-01", "2026-02", "2026-03"),
        base_fen: int = 700000, status: str = "awaiting_payment", source: str = "citizen",
        credit_code: str | None = None, agency_credit_code: str | None = None, ttl: timedelta = timedelta(days=1),
    ) -> str:
        """A flexible declaration (pension 20%, medical 10%) straight into the tables; its id."""
        key = id_hash(id_number)
        decl_id = str(uuid.uuid4())
        lines = []
        for m in months:
            lines.append((m, "pension", 2000, base_fen * 2000 // 10000))
            lines.append((m, "medical", 1000, base_fen * 1000 // 10000))
        now = self.svc.clock.now()
        async with self.svc.db.sessionmaker() as s, s.begin():
            s.add(Declaration(
                id=decl_id, source=source, status=status, category="flexible", region_code="110105",
                person_key=key if source in ("citizen", "agency") else None, credit_code=credit_code,
                agency_credit_code=agency_credit_code, months=list(months), base_fen=base_fen,
                total_fen=sum(x[3] for x in lines), created_by="test", created_at=now,
                confirmed_at=now if status == "awaiting_payment" else None, expires_at=now + ttl,
            ))
            await s.flush()
            s.add_all([
                DeclarationLine(declaration_id=decl_id, line_no=n, person_key=key, month=m, insurance=i,
                                payer="individual", base_fen=base_fen, rate_bp=r, amount_fen=a)
                for n, (m, i, r, a) in enumerate(lines, start=1)
            ])
            s.add_all([DeclaredMonth(declaration_id=decl_id, person_key=key, period=m, insurance=i)
                       for m, i, _r, _a in lines])
        return decl_id

    async def open(self, decl_id: str, channel: str = "alipay", prn: dict[str, Any] | None = None, key: str | None = None) -> httpx.Response:
        prn = prn or citizen(ALICE, "张三", level=2, platform="wechat" if channel == "wechat" else "alipay")
        return await self.client.post(
            f"/contribution/v1/declarations/{decl_id}/payments", json={"channel": channel},
            headers=self.headers(prn, key or str(uuid.uuid4())),
        )


@pytest.fixture
async def world(make_service: Any) -> Any:
    svc = await make_service("contribution", clock=FrozenClock(NOW))
    sandbox_app = FastAPI()
    sandbox_app.include_router(sandbox_router)
    platform = SandboxPayments(
        keys_dir=Path(KEYS), retry_seconds=0.001, now=lambda: svc.clock.now().timestamp(),
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://contribution"),
    )
    sandbox_app.state.sandbox_payments = platform
    sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox_app), base_url="http://sandbox")
    settings = svc.app.state.settings.model_copy(update=dict(
        alipay_gateway_url="http://sandbox/sandbox/alipay/gateway.do",
        wechatpay_base_url="http://sandbox/sandbox/wechatpay",
        alipay_notify_url="http://contribution/contribution/v1/notify/alipay",
        wechatpay_notify_url="http://contribution/contribution/v1/notify/wechatpay",
        wechatpay_refund_notify_url="http://contribution/contribution/v1/notify/wechatpay/refunds",
        certificate_verify_url="https://socialsec.example/contribution/v1/certificates/",
        payment_timeout_minutes=30,
    ))
    svc.app.state.payment_platforms = PaymentPlatforms(settings, svc.app.state.common, client=sandbox)
    yield PayWorld(svc=svc, sandbox=sandbox, platform=platform, settings=settings)
    await platform.drain()
    await sandbox.aclose()
    await platform.client.aclose()
