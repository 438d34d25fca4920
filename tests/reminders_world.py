"""A service wired to the sandbox's message APIs in-process (the reminder tests of every service)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from sandbox.messages import DEFAULT_APPID, SandboxMessages
from sandbox.messages import router as messages_router
from sandbox.payments import SandboxPayments
from sandbox.payments import router as payments_router
from services.common.reminders import MessagePlatforms, ReminderSettings, send_due_messages
from tests.conftest import KEYS


@dataclass
class MessageWorld:
    svc: Any
    send_model: type[Any]
    sandbox: httpx.AsyncClient
    messages: SandboxMessages
    settings: ReminderSettings

    def restart(self) -> None:
        """A new process: new platform clients (no cached access token)."""
        self.svc.app.state.message_platforms = MessagePlatforms(self.settings, self.svc.app.state.common, client=self.sandbox)

    async def send_pass(self) -> int:
        return await send_due_messages(self.svc.app, self.send_model)

    async def sent(self, **filters: str) -> list[dict[str, Any]]:
        r = await self.sandbox.get("/sandbox/messages", params=filters)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def message_world(svc: Any, send_model: type[Any]) -> MessageWorld:
    sandbox_app = FastAPI()
    sandbox_app.include_router(payments_router)
    sandbox_app.include_router(messages_router)
    payments = SandboxPayments(keys_dir=Path(KEYS), now=lambda: svc.clock.now().timestamp())
    messages = SandboxMessages(
        apps={DEFAULT_APPID: (Path(KEYS) / "wechat-app.secret").read_text().strip()},
        now=lambda: svc.clock.now().timestamp(),
    )
    sandbox_app.state.sandbox_payments = payments
    sandbox_app.state.sandbox_messages = messages
    payments.messages = messages  # type: ignore[attr-defined]
    sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox_app), base_url="http://sandbox")
    settings = ReminderSettings(
        wechat_api_url="http://sandbox/sandbox/wechat", alipay_gateway_url="http://sandbox/sandbox/alipay/gateway.do",
        reminder_retry_seconds=30, reminder_lease_seconds=300,
    )
    svc.app.state.reminder_settings = settings
    world = MessageWorld(svc=svc, send_model=send_model, sandbox=sandbox, messages=messages, settings=settings)
    world.restart()
    return world
