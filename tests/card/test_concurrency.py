"""Races the database settles: one live card per person, one use per QR payload, no extra PIN guesses."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from services.card.models import Card, QrVerification
from tests.helpers import channel


async def test_two_applications_at_once_make_one_card(flow: Any, idn: str) -> None:
    await flow.enrol(idn)
    h = flow.h(flow.citizen(idn, level=2))
    results = await asyncio.gather(*(flow.client.post("/card/v1/me/applications", headers=h) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    async with flow.svc.db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Card))).scalar_one() == 1


async def test_a_qr_payload_verified_twice_at_once_is_used_once(flow: Any, idn: str) -> None:
    await flow.active_card(idn)
    await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn)))
    payload = (await flow.client.post("/card/v1/me/ecard/qrcode", headers=flow.h(flow.citizen(idn)))).json()["payload"]
    hospital = flow.h(channel("hospital", "H1"))
    results = await asyncio.gather(*(
        flow.client.post("/card/v1/ecard/verifications", json={"payload": payload}, headers=hospital) for _ in range(3)
    ))
    assert sorted(r.status_code for r in results) == [201, 409, 409]
    async with flow.svc.db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(QrVerification))).scalar_one() == 1


async def test_parallel_wrong_pins_get_no_extra_tries(flow: Any, idn: str) -> None:
    card = await flow.active_card(idn)
    results = await asyncio.gather(*(flow.change_pin(idn, f"99999{n}", "285714") for n in range(6)))
    codes = Counter(r.json()["code"] for r in results)
    assert codes == {"pin_incorrect": 3, "pin_locked": 3}
    row = await flow.card_row(card["id"])
    assert row.pin_locked and row.pin_failed_tries == 3
