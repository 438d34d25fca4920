"""Opening a payment holds no transaction across the call to Alipay or WeChat Pay.

The pending payment is committed first, the platform is called outside any transaction,
its answer is recorded in a second short transaction. A slow platform therefore holds no
connection and (on SQLite) not the write lock; a crash between the two leaves a pending
payment the closing job closes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import select

from services.common.models import IdempotencyKey
from services.contribution.models import Declaration
from services.contribution.payments.jobs import close_payments_once
from services.contribution.payments.models import Payment
from tests.contribution.payments.conftest import ALICE, BOB, PayWorld
from tests.helpers import citizen


class PlatformCrash(BaseException):
    """Stands for the process dying while the platform call is in flight."""


class SlowPlatform:
    """In front of the sandbox: each call waits until released (or crashes when told to)."""

    def __init__(self, sandbox: httpx.AsyncClient) -> None:
        self.sandbox = sandbox
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.crash = False
        self.calls = 0
        self.during: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        if self.crash:
            raise PlatformCrash()
        answer = await self.sandbox.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())


def install(world: PayWorld) -> SlowPlatform:
    platforms = world.svc.app.state.payment_platforms
    slow = SlowPlatform(platforms._client)
    platforms._client = httpx.AsyncClient(transport=httpx.MockTransport(slow.handle))
    return slow


async def payments_of(world: PayWorld, decl_id: str) -> list[Payment]:
    async with world.svc.db.sessionmaker() as s:
        return list((await s.execute(select(Payment).where(Payment.declaration_id == decl_id))).scalars().all())


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
async def test_other_writes_go_on_while_the_platform_is_slow(world: PayWorld, channel: str) -> None:
    slow = install(world)
    decl = await world.declaration()
    bobs = await world.declaration(BOB)
    opening = asyncio.create_task(world.open(decl, channel, key="slow"))
    await slow.entered.wait()
    # The platform holds the request: the pending payment is committed, no connection is held.
    assert world.svc.db.engine.sync_engine.pool.checkedout() == 0
    [pending] = await payments_of(world, decl)
    assert pending.status == "open" and pending.platform_trade_no is None and pending.prepay_id is None
    # Other writes of contribution go on meanwhile: a declaration written, another cancelled.
    third = await world.declaration(BOB, months=("2026-04",))
    r = await world.client.post(f"/contribution/v1/me/declarations/{bobs}/cancel",
                                headers=world.headers(citizen(BOB, level=2)))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # The same key while the first is in flight: still in progress (no second order at the platform).
    twin = await world.open(decl, channel, key="slow")
    assert twin.status_code == 409 and twin.json()["code"] == "idempotency_request_in_progress"
    assert not opening.done() and slow.calls == 1
    slow.release.set()
    r = await opening
    assert r.status_code == 201, r.text
    assert r.json()["id"] == pending.id and r.json()["status"] == "open"
    [row] = await payments_of(world, decl)
    assert (row.platform_trade_no if channel == "alipay" else row.prepay_id)
    replay = await world.open(decl, channel, key="slow")
    assert replay.status_code == 201 and replay.json()["id"] == pending.id
    assert replay.headers.get("Idempotent-Replayed") == "true"
    async with world.svc.db.sessionmaker() as s:
        assert (await s.get(Declaration, third)) is not None


async def test_a_second_key_waits_for_the_opening_in_flight(world: PayWorld) -> None:
    slow = install(world)
    decl = await world.declaration()
    first = asyncio.create_task(world.open(decl, "alipay", key="one"))
    await slow.entered.wait()
    second = asyncio.create_task(world.open(decl, "alipay", key="two"))
    # The second finds the pending payment and waits for its answer, outside any transaction.
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not second.done() and slow.calls == 1
    assert world.svc.db.engine.sync_engine.pool.checkedout() == 0
    slow.release.set()
    a, b = await first, await second
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] == b.json()["id"] and a.json()["trade_no"] == b.json()["trade_no"]
    assert slow.calls == 1 and len(await payments_of(world, decl)) == 1


async def test_a_crash_between_the_two_transactions_is_closed_by_the_job(world: PayWorld) -> None:
    slow = install(world)
    slow.crash = True
    slow.release.set()
    decl = await world.declaration()
    prn = citizen(ALICE, "张三", level=2, platform="alipay")
    with pytest.raises(PlatformCrash):
        await world.client.post(f"/contribution/v1/declarations/{decl}/payments", json={"channel": "alipay"},
                                headers=world.headers(prn, "crash"))
    [left] = await payments_of(world, decl)
    assert left.status == "open" and left.open_declaration_id == decl and left.platform_trade_no is None
    # Replayed at once, the key is still in progress; with another key the payment is not opened twice.
    assert (await world.open(decl, key="crash")).json()["code"] == "idempotency_request_in_progress"
    # The closing job leaves it while its request may still come back...
    assert await close_payments_once(world.svc.app) == 0
    # ...and closes it once that is no longer possible (at the platform first, which no longer
    # fails: the process that crashed is gone): the declaration is free again.
    slow.crash = False
    world.svc.clock.advance(seconds=world.settings.platform_timeout_seconds + 61)
    assert await close_payments_once(world.svc.app) == 1
    [closed] = await payments_of(world, decl)
    assert closed.status == "closed" and closed.open_declaration_id is None
    slow.crash = False
    fresh = await world.open(decl, key=str(uuid.uuid4()))
    assert fresh.status_code == 201 and fresh.json()["id"] != left.id and fresh.json()["trade_no"]
    # The key the crash left in progress is usable again after its lease.
    world.svc.clock.advance(minutes=5)
    again = await world.open(decl, key="crash")
    assert again.status_code == 201 and again.json()["id"] == fresh.json()["id"]
    async with world.svc.db.sessionmaker() as s:
        claim = (await s.execute(select(IdempotencyKey).where(IdempotencyKey.key == "crash"))).scalar_one()
    assert claim.status_code == 201


async def test_an_opening_found_pending_after_a_crash_is_closed_and_opened_anew(world: PayWorld) -> None:
    slow = install(world)
    slow.crash = True
    slow.release.set()
    decl = await world.declaration()
    with pytest.raises(PlatformCrash):
        await world.open(decl, key="k1")
    [left] = await payments_of(world, decl)
    slow.crash = False
    world.svc.clock.advance(seconds=world.settings.platform_timeout_seconds + 61)
    r = await world.open(decl, key="k2")
    assert r.status_code == 201 and r.json()["id"] != left.id
    statuses = {p.id: p.status for p in await payments_of(world, decl)}
    assert statuses == {left.id: "closed", r.json()["id"]: "open"}
