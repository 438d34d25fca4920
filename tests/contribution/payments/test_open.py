"""POST /contribution/v1/declarations/{id}/payments: who may open, what is answered, one open payment."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import httpx
from sqlalchemy import select

from services.common.pii import id_hash
from services.contribution.models import AgencyAuthorization
from services.contribution.payments.models import Payment
from tests.conftest import KEYS
from tests.contribution.payments import independent as ind
from tests.contribution.payments.conftest import ALICE, BOB, PayWorld
from tests.helpers import agency, citizen, employer, make_credit_code, staff


async def payments_of(world: PayWorld, decl_id: str) -> list[Payment]:
    async with world.svc.db.sessionmaker() as s:
        return list((await s.execute(select(Payment).where(Payment.declaration_id == decl_id))).scalars().all())


class TestOpenPaymentRefusals:
    async def test_anonymous(self, world: PayWorld) -> None:
        decl = await world.declaration()
        r = await world.client.post(f"/contribution/v1/declarations/{decl}/payments", json={"channel": "alipay"},
                                    headers={"Idempotency-Key": "k1"})
        assert r.status_code == 401 and r.json()["code"] == "principal_required"

    async def test_wrong_kind_and_low_level(self, world: PayWorld) -> None:
        decl = await world.declaration()
        r = await world.open(decl, prn=staff("operator"))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await world.open(decl, prn=citizen(ALICE, level=1))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_someone_elses_declaration_is_not_found(self, world: PayWorld) -> None:
        decl = await world.declaration(ALICE)
        r = await world.open(decl, prn=citizen(BOB, "李四", level=3))
        assert r.status_code == 404 and r.json()["code"] == "declaration_not_found"
        r = await world.open("no-such-declaration")
        assert r.status_code == 404

    async def test_idempotency_key_is_required(self, world: PayWorld) -> None:
        decl = await world.declaration()
        r = await world.client.post(f"/contribution/v1/declarations/{decl}/payments", json={"channel": "alipay"},
                                    headers=world.headers(citizen(ALICE)))
        assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
        assert await payments_of(world, decl) == []

    async def test_bad_input(self, world: PayWorld) -> None:
        decl = await world.declaration()
        h = world.headers(citizen(ALICE), "k1")
        url = f"/contribution/v1/declarations/{decl}/payments"
        for body in ({"channel": "unionpay"}, {}, {"channel": "alipay", "amount_fen": 1}, {"channel": 1}):
            r = await world.client.post(url, json=body, headers=h)
            assert r.status_code == 422, body
        r = await world.client.post(url, content=b"{not json", headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "malformed_body"
        r = await world.client.post(f"/contribution/v1/declarations/{'x' * 65}/payments", json={"channel": "alipay"}, headers=h)
        assert (r.status_code, r.json()["code"]) == (404, "not_found")  # not an id: no such declaration

    async def test_only_a_declaration_awaiting_payment(self, world: PayWorld) -> None:
        draft = await world.declaration(status="draft")
        r = await world.open(draft)
        assert r.status_code == 409 and r.json()["code"] == "declaration_state_conflict"
        cancelled = await world.declaration(months=("2025-12",), status="cancelled")
        assert (await world.open(cancelled)).status_code == 409

    async def test_channel_must_be_the_calling_platforms(self, world: PayWorld) -> None:
        decl = await world.declaration()
        r = await world.open(decl, "wechat", prn=citizen(ALICE, platform="alipay"))
        assert r.status_code == 422 and r.json()["code"] == "channel_not_available"

    async def test_platform_unavailable_leaves_nothing_open(self, world: PayWorld) -> None:
        decl = await world.declaration()
        platforms = world.svc.app.state.payment_platforms
        sandbox = platforms._client
        platforms._client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
        r = await world.open(decl, key="try")
        assert r.status_code == 502 and r.json()["code"] == "payment_platform_unavailable"
        # The payment committed before the call is closed: the declaration is free again.
        [failed] = await payments_of(world, decl)
        assert failed.status == "closed" and failed.open_declaration_id is None
        # The same Idempotency-Key tries again once the platform is back.
        platforms._client = sandbox
        again = await world.open(decl, key="try")
        assert again.status_code == 201 and again.json()["id"] != failed.id and again.json()["trade_no"]


class TestOpenAlipay:
    async def test_answers_the_trade_no_for_the_total(self, world: PayWorld) -> None:
        decl = await world.declaration()  # 3 months x (1400 + 700) yuan
        r = await world.open(decl, "alipay", key="pay-1")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["channel"] == "alipay" and body["status"] == "open" and body["amount_fen"] == 630000
        assert body["trade_no"] and "paySign" not in body
        trade = world.platform.alipay_trades[body["trade_no"]]
        assert trade["total_amount"] == "6300.00" and trade["out_trade_no"] == body["out_trade_no"]
        assert trade["buyer_open_id"] == citizen(ALICE)["sub"]
        assert trade["notify_url"] == "http://contribution/contribution/v1/notify/alipay"
        [row] = await payments_of(world, decl)
        assert row.id == body["id"] and row.open_declaration_id == decl and row.platform_trade_no == body["trade_no"]

    async def test_same_key_replays_other_body_refused(self, world: PayWorld) -> None:
        decl = await world.declaration()
        first = await world.open(decl, "alipay", key="same")
        again = await world.open(decl, "alipay", key="same")
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers.get("Idempotent-Replayed") == "true"
        other = await world.open(decl, "wechat", prn=citizen(ALICE, platform="alipay"), key="same")
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"

    async def test_one_open_payment_per_declaration(self, world: PayWorld) -> None:
        decl = await world.declaration()
        a = await world.open(decl, "alipay")
        b = await world.open(decl, "alipay")
        assert b.status_code == 201 and b.json()["id"] == a.json()["id"]
        c = await world.open(decl, "wechat", prn=citizen(ALICE, platform="other"))
        assert c.status_code == 409 and c.json()["code"] == "payment_already_open"
        assert c.json()["payment_id"] == a.json()["id"]
        assert len(await payments_of(world, decl)) == 1

    async def test_concurrent_opens_make_one_payment(self, world: PayWorld) -> None:
        decl = await world.declaration()
        rs = await asyncio.gather(*[world.open(decl, "alipay", key=f"k{i}") for i in range(6)])
        assert {r.status_code for r in rs} == {201}
        assert len({r.json()["id"] for r in rs}) == 1
        assert len(await payments_of(world, decl)) == 1

    async def test_employer_and_authorized_agency(self, world: PayWorld) -> None:
        unit = make_credit_code("91110105MA0000001")
        decl = await world.declaration(source="employer", credit_code=unit)
        r = await world.open(decl, prn=employer(unit))
        assert r.status_code == 201, r.text
        other = await world.open(decl, prn=employer(make_credit_code("91110105MA0000003")))
        assert other.status_code == 404
        # An agency without an authorization in force does not see the person's declaration.
        mine = await world.declaration(months=("2025-11",))
        assert (await world.open(mine, prn=agency())).status_code == 404

    async def test_authorized_agency_pays_for_the_person(self, world: PayWorld) -> None:
        decl = await world.declaration(source="agency", agency_credit_code=agency()["credit_code"])
        assert (await world.open(decl, prn=agency())).status_code == 404
        async with world.svc.db.sessionmaker() as s, s.begin():
            s.add(AgencyAuthorization(id=str(uuid.uuid4()), person_key=id_hash(ALICE), agency_credit_code=agency()["credit_code"],
                                      valid_until=date(2026, 12, 31), created_at=world.svc.clock.now()))
        r = await world.open(decl, prn=agency())
        assert r.status_code == 201, r.text
        [row] = await payments_of(world, decl)
        assert row.opened_by == f"agency:{agency()['credit_code']}" and row.holder_name is None


class TestOpenWechat:
    async def test_answers_signed_request_payment_parameters(self, world: PayWorld) -> None:
        decl = await world.declaration()
        r = await world.open(decl, "wechat")
        assert r.status_code == 201, r.text
        p = r.json()
        assert p["signType"] == "RSA" and p["package"].startswith("prepay_id=wx") and "trade_no" not in p
        assert p["timeStamp"] == str(int(world.svc.clock.now().timestamp()))
        message = f"{p['appId']}\n{p['timeStamp']}\n{p['nonceStr']}\n{p['package']}\n".encode()
        assert ind.sha256_rsa_ok(ind.load_public(KEYS / "wechatpay-merchant.pub.pem"), message, p["paySign"])
        order = next(iter(world.platform.wechat_orders.values()))
        assert order["total"] == 630000 and order["openid"] == citizen(ALICE, platform="wechat")["sub"]
        assert json.loads(json.dumps(order))["notify_url"].endswith("/notify/wechatpay")


class TestMyDeclarationsPaymentsPath:
    """`/me/declarations/{id}/payments` is the documented path; the old one stays served, deprecated."""

    async def test_the_me_path_opens_the_same_payment(self, world: PayWorld) -> None:
        decl = await world.declaration()
        prn = citizen(ALICE, "张三", level=2, platform="alipay")
        mine = await world.client.post(f"/contribution/v1/me/declarations/{decl}/payments", json={"channel": "alipay"},
                                       headers=world.headers(prn, "me-1"))
        assert mine.status_code == 201, mine.text
        assert mine.json()["trade_no"]
        old = await world.open(decl, prn=prn, key="old-1")  # the open payment on the same channel, answered again
        assert old.status_code == 201 and old.json()["id"] == mine.json()["id"]
        assert len(await payments_of(world, decl)) == 1

    async def test_the_me_path_is_for_citizens_and_needs_a_key(self, world: PayWorld) -> None:
        decl = await world.declaration()
        url = f"/contribution/v1/me/declarations/{decl}/payments"
        r = await world.client.post(url, json={"channel": "alipay"}, headers=world.headers(employer(), "k"))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await world.client.post(url, json={"channel": "alipay"}, headers=world.headers(citizen(ALICE, level=2)))
        assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"

    def test_the_old_path_is_deprecated_in_the_document(self, world: PayWorld) -> None:
        doc = world.svc.app.openapi()
        assert doc["paths"]["/contribution/v1/declarations/{declaration_id}/payments"]["post"]["deprecated"] is True
        new = doc["paths"]["/contribution/v1/me/declarations/{declaration_id}/payments"]["post"]
        assert not new.get("deprecated")
        headers = [p for p in new["parameters"] if p["name"] == "Idempotency-Key"]
        assert len(headers) == 1 and headers[0]["required"] is True
