"""Family service (亲情服务): binding relatives, invitations, acting for a bound relative, events."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from jose import jwt
from sqlalchemy import select, text

from services.card.events import FAMILY_BOUND, FAMILY_UNBOUND
from services.card.family import age_on
from services.card.models import FamilyBinding
from services.common.models import AuditEntry, OutboxEvent
from services.common.pii import id_hash
from tests.helpers import channel, make_id_number, staff

URL = "/card/v1/me/family"
INVITATIONS = "/card/v1/me/family-invitations"
HOSPITAL = channel("hospital", "H-301")

HOLDER = make_id_number("110105", "19800101", "001")
MOTHER = make_id_number("110105", "19550202", "002")
SPOUSE = make_id_number("110105", "19820303", "004")
CHILD = make_id_number("110105", "20150601", "003")  # 10 on 2026-03-10
OTHER = make_id_number("310101", "19900505", "005")


def masked(idn: str) -> str:
    return idn[:6] + "********" + idn[-4:]


async def _add(flow: Any, relative: str, relation: str = "parent", name: str = "李梅", by: str = HOLDER, **kw: Any) -> Any:
    return await flow.client.post(
        URL, json={"id_number": relative, "name": name, "relation": relation},
        headers=flow.h(flow.citizen(by, **kw)),
    )


async def _accept(flow: Any, binding_id: str, by: str, name: str = "李梅") -> Any:
    return await flow.client.post(f"{INVITATIONS}/{binding_id}/acceptance", headers=flow.h(flow.citizen(by, name)))


async def _events(flow: Any, type_: str) -> list[OutboxEvent]:
    async with flow.svc.db.sessionmaker() as s:
        return list((await s.execute(select(OutboxEvent).where(OutboxEvent.type == type_))).scalars().all())


async def _ecard(flow: Any, idn: str, platform: str = "alipay") -> None:
    r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn, platform=platform)))
    assert r.status_code == 201, r.text


async def _qr(flow: Any, binding_id: str, by: str = HOLDER, platform: str = "alipay") -> Any:
    return await flow.client.post(f"{URL}/{binding_id}/ecard/qrcode", headers=flow.h(flow.citizen(by, platform=platform)))


async def _bound_adult(flow: Any, relative: str = MOTHER) -> str:
    r = await _add(flow, relative)
    assert r.status_code == 201, r.text
    r = await _accept(flow, r.json()["id"], relative)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


class TestAge:
    def test_sixteenth_birthday(self) -> None:
        assert age_on(datetime(2010, 3, 10).date(), datetime(2026, 3, 9).date()) == 15
        assert age_on(datetime(2010, 3, 10).date(), datetime(2026, 3, 10).date()) == 16
        assert age_on(datetime(2008, 2, 29).date(), datetime(2024, 2, 28).date()) == 15
        assert age_on(datetime(2008, 2, 29).date(), datetime(2024, 2, 29).date()) == 16


class TestWho:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post(URL, json={})).status_code == 401
        assert (await flow.client.get(URL)).status_code == 401
        assert (await flow.client.get(INVITATIONS)).status_code == 401

    async def test_level_three_citizens_only(self, flow: Any) -> None:
        r = await _add(flow, MOTHER, level=2)
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"
        for prn in (channel("bank"), staff("admin")):
            r = await flow.client.post(URL, json={"id_number": MOTHER, "name": "李梅", "relation": "parent"},
                                       headers=flow.h(prn))
            assert r.status_code == 403


class TestAdultRelative:
    async def test_pending_until_the_relative_accepts_with_their_own_token(self, flow: Any) -> None:
        r = await _add(flow, MOTHER)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "pending" and body["role"] == "holder" and body["relation"] == "parent"
        assert body["relative_minor"] is False and body["accepted_at"] is None
        assert body["relative_id_number_masked"] == masked(MOTHER) and body["relative_name_masked"] == "*梅"
        assert body["holder_id_number_masked"] == masked(HOLDER) and body["holder_name_masked"] == "*三"
        assert MOTHER not in r.text and HOLDER not in r.text
        assert await _events(flow, FAMILY_BOUND) == []

        # Nothing is shared while pending.
        r = await flow.client.get(f"{URL}/{body['id']}/card", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 409 and r.json()["code"] == "family_binding_not_active" and r.json()["binding_status"] == "pending"

        # The invitation is addressed to the mother's id number only.
        invites = (await flow.client.get(INVITATIONS, headers=flow.h(flow.citizen(MOTHER, "李梅")))).json()["items"]
        assert [i["id"] for i in invites] == [body["id"]] and invites[0]["role"] == "relative"
        assert (await flow.client.get(INVITATIONS, headers=flow.h(flow.citizen(OTHER)))).json()["items"] == []

        # A third person cannot accept it, nor can the holder.
        for who in (OTHER, HOLDER):
            r = await _accept(flow, body["id"], who)
            assert r.status_code == 404 and r.json()["code"] == "family_invitation_not_found"

        r = await _accept(flow, body["id"], MOTHER)
        assert r.status_code == 200, r.text
        accepted = r.json()
        assert accepted["status"] == "active" and accepted["role"] == "relative" and accepted["accepted_at"]
        r = await _accept(flow, body["id"], MOTHER)
        assert r.status_code == 409 and r.json()["code"] == "family_invitation_not_pending"

        [event] = await _events(flow, FAMILY_BOUND)
        assert event.subject == body["id"]
        assert event.data["binding_id"] == body["id"] and event.data["relation"] == "parent"
        assert event.data["holder_id_hash"] == id_hash(HOLDER) and event.data["relative_id_hash"] == id_hash(MOTHER)
        assert event.data["relative_minor"] is False
        assert HOLDER not in str(event.data) and MOTHER not in str(event.data)

    async def test_person_ids_known_from_registration_are_in_the_event(self, flow: Any) -> None:
        await flow.enrol(HOLDER)
        await flow.enrol(MOTHER, name="李梅")
        await _bound_adult(flow)
        [event] = await _events(flow, FAMILY_BOUND)
        assert event.data["holder_person_id"] == f"p-{id_hash(HOLDER)[:12]}"
        assert event.data["relative_person_id"] == f"p-{id_hash(MOTHER)[:12]}"

    async def test_declined_invitation_shares_nothing(self, flow: Any) -> None:
        binding_id = (await _add(flow, MOTHER)).json()["id"]
        r = await flow.client.post(f"{INVITATIONS}/{binding_id}/refusal", headers=flow.h(flow.citizen(OTHER)))
        assert r.status_code == 404
        r = await flow.client.post(f"{INVITATIONS}/{binding_id}/refusal", headers=flow.h(flow.citizen(MOTHER)))
        assert r.status_code == 200 and r.json()["status"] == "declined" and r.json()["ended_by"] == "relative"
        assert (await _accept(flow, binding_id, MOTHER)).json()["code"] == "family_invitation_not_pending"
        assert (await flow.client.get(URL, headers=flow.h(flow.citizen(HOLDER)))).json()["items"] == []
        assert await _events(flow, FAMILY_BOUND) == []
        # The holder may invite again.
        assert (await _add(flow, MOTHER)).status_code == 201

    async def test_sixteen_by_the_date_in_shanghai(self, flow: Any) -> None:
        # 2026-03-09 16:30 UTC is already 2026-03-10 in Shanghai: born 2010-03-10, sixteen today.
        flow.svc.clock.set(datetime(2026, 3, 9, 16, 30, tzinfo=UTC))
        teen = make_id_number("110105", "20100310", "007")
        r = await _add(flow, teen, relation="child")
        assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["relative_minor"] is False
        younger = make_id_number("110105", "20100311", "009")
        r = await _add(flow, younger, relation="child")
        assert r.status_code == 201 and r.json()["status"] == "active" and r.json()["relative_minor"] is True


class TestChild:
    async def test_bound_at_once_and_audited(self, flow: Any) -> None:
        r = await _add(flow, CHILD, relation="child", name="张小明")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "active" and body["relative_minor"] is True and body["accepted_at"]
        async with flow.svc.db.sessionmaker() as s:
            [audit] = (await s.execute(
                select(AuditEntry).where(AuditEntry.action == "card.family.child_bound")
            )).scalars().all()
        assert audit.target_id == body["id"] and audit.actor_kind == "citizen"
        assert CHILD not in str(audit.details) and audit.details["relative_id_number_masked"] == masked(CHILD)
        [event] = await _events(flow, FAMILY_BOUND)
        assert event.data["relative_minor"] is True and event.data["relation"] == "child"
        # No invitation waits for a child.
        assert (await flow.client.get(INVITATIONS, headers=flow.h(flow.citizen(CHILD)))).json()["items"] == []

    async def test_a_child_under_sixteen_only_as_child(self, flow: Any) -> None:
        for relation in ("sibling", "grandchild", "other"):
            r = await _add(flow, CHILD, relation=relation)
            assert r.status_code == 422 and r.json()["code"] == "family_minor_relation", r.text
        assert (await flow.client.get(URL, headers=flow.h(flow.citizen(HOLDER)))).json()["items"] == []


class TestLimits:
    async def test_self_refused(self, flow: Any) -> None:
        r = await _add(flow, HOLDER, relation="other")
        assert r.status_code == 422 and r.json()["code"] == "family_self_binding"
        r = await flow.client.post(URL, json={"id_number": HOLDER.lower(), "name": "张三", "relation": "other"},
                                   headers=flow.h(flow.citizen(HOLDER)))
        assert r.json()["code"] == "family_self_binding"

    async def test_duplicate_refused_pending_or_active(self, flow: Any) -> None:
        assert (await _add(flow, MOTHER)).status_code == 201
        r = await _add(flow, MOTHER, relation="other")
        assert r.status_code == 409 and r.json()["code"] == "family_binding_exists"
        child = await _add(flow, CHILD, relation="child")
        assert child.status_code == 201
        r = await _add(flow, CHILD, relation="child")
        assert r.status_code == 409 and r.json()["code"] == "family_binding_exists"
        # The other direction is a binding of its own.
        r = await _add(flow, HOLDER, relation="child", name="张三", by=MOTHER)
        assert r.status_code == 201, r.text

    async def test_eight_pending_or_active(self, flow: Any) -> None:
        ids = []
        for n in range(8):
            r = await _add(flow, make_id_number("110105", "19600101", f"{100 + n:03d}"), relation="sibling")
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = await _add(flow, SPOUSE, relation="spouse")
        assert r.status_code == 409 and r.json()["code"] == "family_limit_reached" and r.json()["limit"] == 8
        r = await _add(flow, CHILD, relation="child")
        assert r.json()["code"] == "family_limit_reached"
        # Withdrawing one frees its place.
        assert (await flow.client.delete(f"{URL}/{ids[3]}", headers=flow.h(flow.citizen(HOLDER)))).status_code == 204
        assert (await _add(flow, SPOUSE, relation="spouse")).status_code == 201
        assert (await _add(flow, CHILD, relation="child")).json()["code"] == "family_limit_reached"
        async with flow.svc.db.sessionmaker() as s:
            rows = (await s.execute(select(FamilyBinding).where(FamilyBinding.holder_hash == id_hash(HOLDER)))).scalars().all()
        assert len([b for b in rows if b.slot_key]) == 8 and len({b.slot_key for b in rows if b.slot_key}) == 8


class TestActingForARelative:
    async def test_card_and_qr_while_bound_and_never_after_unbinding(self, flow: Any) -> None:
        await flow.active_card(MOTHER, card_no="K87654321", name="李梅")
        await _ecard(flow, MOTHER)
        binding_id = await _bound_adult(flow)

        r = await flow.client.get(f"{URL}/{binding_id}/card", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 200, r.text
        card = r.json()
        assert card["status"] == "active" and card["card_no_masked"] == "K******21"
        assert card["id_number_masked"] == masked(MOTHER) and card["holder_name_masked"] == "*梅"
        assert MOTHER not in r.text and "K87654321" not in r.text

        r = await _qr(flow, binding_id)
        assert r.status_code == 200, r.text
        payload = r.json()["payload"]
        assert MOTHER not in str(jwt.get_unverified_claims(payload))
        v = await flow.client.post("/card/v1/ecard/verifications", json={"payload": payload}, headers=flow.h(HOSPITAL))
        assert v.status_code == 201 and v.json()["card_id"] == card["id"] and v.json()["holder_name_masked"] == "*梅"
        # The relative's e-card on another platform is not there.
        r = await _qr(flow, binding_id, platform="wechat")
        assert r.status_code == 404 and r.json()["code"] == "ecard_not_found"
        # Only the holder acts for the relative; the relative and others get 404.
        for who in (MOTHER, OTHER):
            r = await _qr(flow, binding_id, by=who)
            assert r.status_code == 404 and r.json()["code"] == "family_binding_not_found"
            r = await flow.client.get(f"{URL}/{binding_id}/card", headers=flow.h(flow.citizen(who)))
            assert r.status_code == 404 and r.json()["code"] == "family_binding_not_found"

        # The relative unbinds: at once, the holder sees nothing more.
        r = await flow.client.delete(f"{URL}/{binding_id}", headers=flow.h(flow.citizen(MOTHER)))
        assert r.status_code == 204
        r = await _qr(flow, binding_id)
        assert r.status_code == 409 and r.json()["code"] == "family_binding_not_active" and r.json()["binding_status"] == "ended"
        r = await flow.client.get(f"{URL}/{binding_id}/card", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 409 and r.json()["code"] == "family_binding_not_active"
        r = await flow.client.delete(f"{URL}/{binding_id}", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 404 and r.json()["code"] == "family_binding_not_found"

        [event] = await _events(flow, FAMILY_UNBOUND)
        assert event.data["binding_id"] == binding_id and event.data["unbound_by"] == "relative"
        assert event.data["holder_id_hash"] == id_hash(HOLDER) and event.data["relative_id_hash"] == id_hash(MOTHER)

    async def test_holder_unbinds(self, flow: Any) -> None:
        binding_id = await _bound_adult(flow)
        r = await flow.client.delete(f"{URL}/{binding_id}", headers=flow.h(flow.citizen(OTHER)))
        assert r.status_code == 404
        r = await flow.client.delete(f"{URL}/{binding_id}", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 204
        [event] = await _events(flow, FAMILY_UNBOUND)
        assert event.data["unbound_by"] == "holder"
        assert (await flow.client.get(URL, headers=flow.h(flow.citizen(MOTHER)))).json()["items"] == []
        # Bound again later: a new binding.
        assert (await _add(flow, MOTHER)).status_code == 201

    async def test_unbinding_a_pending_invitation_publishes_nothing(self, flow: Any) -> None:
        binding_id = (await _add(flow, MOTHER)).json()["id"]
        assert (await flow.client.delete(f"{URL}/{binding_id}", headers=flow.h(flow.citizen(HOLDER)))).status_code == 204
        assert (await _accept(flow, binding_id, MOTHER)).json()["code"] == "family_invitation_not_pending"
        assert await _events(flow, FAMILY_UNBOUND) == []

    async def test_relative_without_a_card(self, flow: Any) -> None:
        binding_id = (await _add(flow, CHILD, relation="child")).json()["id"]
        r = await flow.client.get(f"{URL}/{binding_id}/card", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 404 and r.json()["code"] == "card_not_found"
        assert (await _qr(flow, binding_id)).json()["code"] == "card_not_found"

    async def test_list_both_directions_masked(self, flow: Any) -> None:
        mine = await _bound_adult(flow)
        theirs = (await _add(flow, HOLDER, relation="child", name="张三", by=SPOUSE)).json()["id"]
        r = await flow.client.get(URL, headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 200
        items = {i["id"]: i for i in r.json()["items"]}
        assert items[mine]["role"] == "holder" and items[mine]["status"] == "active"
        assert items[theirs]["role"] == "relative" and items[theirs]["status"] == "pending"
        assert items[theirs]["holder_id_number_masked"] == masked(SPOUSE)
        for idn in (HOLDER, MOTHER, SPOUSE):
            assert idn not in r.text
        # At rest the id numbers are ciphertext.
        async with flow.svc.db.sessionmaker() as s:
            raw = (await s.execute(text("SELECT relative_id_number, holder_id_number FROM family_bindings"))).all()
        assert raw and all(MOTHER not in str(row) and HOLDER not in str(row) for row in raw)


class TestBadInput:
    async def test_problem_codes(self, flow: Any) -> None:
        h = flow.h(flow.citizen(HOLDER), **{"accept-language": "en"})
        cases = [
            ({"id_number": "١١٠١٠٥١٩٥٥٠٢٠٢٠٠٢X", "name": "李梅", "relation": "parent"}, "id_number_invalid"),
            ({"id_number": MOTHER[:-1] + ("0" if MOTHER[-1] != "0" else "1"), "name": "李梅", "relation": "parent"},
             "id_number_invalid"),
            ({"id_number": "123", "name": "李梅", "relation": "parent"}, "id_number_invalid"),
            ({"id_number": MOTHER, "name": "李梅", "relation": "cousin"}, "validation_failed"),
            ({"id_number": MOTHER, "name": "李梅"}, "validation_failed"),
            ({"id_number": MOTHER, "name": "李梅1", "relation": "parent"}, "name_invalid"),
            ({"id_number": MOTHER, "name": "李梅", "relation": "parent", "extra": 1}, "validation_failed"),
        ]
        for body, code in cases:
            r = await flow.client.post(URL, json=body, headers=h)
            assert r.status_code == 422, (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == code, (body, r.json())
        r = await flow.client.post(URL, json={"id_number": MOTHER, "name": "李梅", "relation": "cousin"}, headers=h)
        assert [e["field"] for e in r.json()["errors"]] == ["relation"]
        # Full-width digits are read as ASCII.
        full = MOTHER.translate({0x30 + i: 0xFF10 + i for i in range(10)})
        r = await flow.client.post(URL, json={"id_number": full, "name": "李梅", "relation": "parent"}, headers=h)
        assert r.status_code == 201 and r.json()["relative_id_number_masked"] == masked(MOTHER)

    async def test_no_route_answers_500(self, flow: Any) -> None:
        bodies: list[bytes] = [b"", b"{", b"\xff\xfe", b"[]", b"null", b'"x"', b'{"relation": null}',
                               b'{"id_number": [], "name": 5, "relation": {}}', b'{"name": "' + b"a" * 70000 + b'"}']
        for body in bodies:
            r = await flow.client.post(URL, content=body, headers=flow.h(flow.citizen(HOLDER), **{"content-type": "application/json"}))
            assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/problem+json"), r.text
        for path in (f"{URL}/not-an-id", f"{URL}/{'x' * 100}/card", f"{INVITATIONS}/123/acceptance"):
            r = await flow.client.request("POST" if path.endswith("acceptance") else "DELETE" if path.count("/") == 5 else "GET",
                                          path, headers=flow.h(flow.citizen(HOLDER)))
            assert r.status_code == 404, (path, r.status_code)
        unknown = "3f2b8c1e-7a4d-4c55-9e0b-2d6f1a8b9c70"
        r = await flow.client.get(f"{URL}/{unknown}/card", headers=flow.h(flow.citizen(HOLDER)))
        assert r.status_code == 404 and r.json()["code"] == "family_binding_not_found"
        r = await _accept(flow, unknown, MOTHER)
        assert r.status_code == 404 and r.json()["code"] == "family_invitation_not_found"


class TestRaces:
    async def test_ten_relatives_at_once_bind_eight(self, flow: Any) -> None:
        relatives = [make_id_number("110105", "19600101", f"{200 + n:03d}") for n in range(10)]
        results = await asyncio.gather(*(_add(flow, r, relation="sibling") for r in relatives))
        codes = Counter(r.json().get("code", r.status_code) for r in results)
        assert codes == {201: 8, "family_limit_reached": 2}, codes
        async with flow.svc.db.sessionmaker() as s:
            rows = (await s.execute(select(FamilyBinding))).scalars().all()
        assert len(rows) == 8 and len({b.slot_key for b in rows}) == 8

    async def test_the_same_relative_at_once_binds_once(self, flow: Any) -> None:
        results = await asyncio.gather(*(_add(flow, MOTHER) for _ in range(4)))
        assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
        assert {r.json()["code"] for r in results if r.status_code == 409} == {"family_binding_exists"}
