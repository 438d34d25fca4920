"""Reads beside writes: GET requests run in read transactions that never wait for the write lock.

On SQLite a write transaction holds the database's one write lock from its first
statement; a GET must not queue behind it (nor behind other GETs), and a write
that reads first must still never fail with "database is locked".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text, update

from services.common.db import ReadOnlySessionError
from services.contribution.models import Declaration
from tests.contribution.conftest import ALICE, BOB, enrol_self
from tests.helpers import citizen

D = "/contribution/v1/me/declarations"


def flexible(months: list[str]) -> dict[str, Any]:
    return {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": months}


async def declare(svc: Any, who: str, months: list[str]) -> str:
    r = await svc.client.post(D, json=flexible(months), headers=svc.headers(citizen(who)))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


class TestReadsBesideAWriter:
    async def test_readers_answer_while_a_write_transaction_is_open(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        mine = await declare(svc, ALICE, ["2026-02"])
        reader = svc.headers(citizen(ALICE, level=1))
        # A writer holds the write lock (it has written and not committed) for as long as the readers run.
        async with svc.db.sessionmaker() as writer, writer.begin():
            await writer.execute(update(Declaration).where(Declaration.id == mine).values(created_by="writer"))
            answers = await asyncio.gather(*[svc.client.get(D, headers=reader) for _ in range(16)])
            ready = await svc.client.get("/readyz")
            # Every reader has its answer while the writer is still open: none waited for its lock.
            assert writer.in_transaction()
        assert [r.status_code for r in answers] == [200] * 16
        assert all([d["id"] for d in r.json()["items"]] == [mine] for r in answers)
        assert ready.status_code == 200

    async def test_readers_do_not_see_an_uncommitted_write(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        mine = await declare(svc, ALICE, ["2026-02"])
        async with svc.db.sessionmaker() as writer, writer.begin():
            await writer.execute(update(Declaration).where(Declaration.id == mine).values(status="cancelled"))
            during = await svc.client.get(f"{D}/{mine}", headers=svc.headers(citizen(ALICE, level=1)))
        after = await svc.client.get(f"{D}/{mine}", headers=svc.headers(citizen(ALICE, level=1)))
        assert during.status_code == 200 and during.json()["status"] == "draft"
        assert after.json()["status"] == "cancelled"

    async def test_readers_and_writers_together_never_lock(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        await enrol_self(svc, BOB)
        drafts = [await declare(svc, BOB, [m]) for m in ("2026-01", "2026-02", "2026-03")]
        reader = svc.headers(citizen(ALICE, level=1))
        bob = svc.headers(citizen(BOB))
        calls = (
            [svc.client.get(D, headers=reader) for _ in range(16)]
            + [svc.client.post(D, json=flexible([m]), headers=svc.headers(citizen(ALICE))) for m in ("2026-01", "2026-02", "2026-03")]
            # Each reads the declaration, then writes it: two racing for one row wait for each other.
            + [svc.client.post(f"{D}/{d}/confirm", headers=bob) for d in drafts for _ in range(2)]
        )
        answers = await asyncio.gather(*calls)
        assert [r.status_code for r in answers[:16]] == [200] * 16
        assert [r.status_code for r in answers[16:19]] == [201] * 3
        confirms = answers[19:]
        assert all(r.status_code in (200, 409) for r in confirms), [r.text for r in confirms]
        assert sum(r.status_code == 200 for r in confirms) >= len(drafts)
        async with svc.db.sessionmaker() as s:
            statuses = (await s.execute(select(Declaration.status).where(Declaration.id.in_(drafts)))).scalars().all()
        assert set(statuses) == {"awaiting_payment"}
        listed = await svc.client.get(D, headers=reader)
        assert len(listed.json()["items"]) == 3


class TestReadSessions:
    async def test_a_read_session_refuses_to_write(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        mine = await declare(svc, ALICE, ["2026-02"])
        async with svc.db.read_sessionmaker() as s:
            decl = await s.get(Declaration, mine)
            assert decl is not None
            decl.created_by = "someone"
            with pytest.raises(ReadOnlySessionError):
                await s.flush()
        async with svc.db.read_sessionmaker() as s:
            with pytest.raises(ReadOnlySessionError):
                await s.execute(update(Declaration).where(Declaration.id == mine).values(created_by="someone"))
        async with svc.db.read_sessionmaker() as s:
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
