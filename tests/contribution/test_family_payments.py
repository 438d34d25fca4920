"""Family service (亲情服务), contribution side: a citizen pays a bound relative's declarations.

ALICE (the holder) bound BOB (the relative) in the card service; contribution learns it from
`card.family.bound.v1` / `card.family.unbound.v1`. The payment, the declaration, the credited
records and the published event say `paid_by = "family"`; the certificate names the relative.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from services.common.events import CloudEvent
from services.common.models import OutboxEvent
from services.common.pii import id_hash, mask_id_number
from services.contracts import card
from services.contribution import family
from services.contribution.errors import DeclarationNotFoundUnlessBound
from services.contribution.events import DECLARATION_PAID
from services.contribution.models import ContributionRecord, Declaration, FamilyBinding, KnownPerson
from services.contribution.payments.models import Certificate, Payment
from tests.contribution.payments.conftest import ALICE, BOB, NOW, PayWorld
from tests.contribution.payments.conftest import world as world  # the payment fixture, shared
from tests.contribution.payments.test_notify import alipay_signed, post_alipay
from tests.helpers import citizen, make_id_number

CAROL = make_id_number("310101", "19920202", "022")
HOLDER = citizen(ALICE, "张三", level=3)
RELATIVE = citizen(BOB, "李四", level=3)


def bound_event(binding_id: str, holder: str = ALICE, relative: str = BOB, at: Any = None) -> CloudEvent:
    data = card.FamilyBound(
        binding_id=binding_id, holder_id_hash=id_hash(holder), relative_id_hash=id_hash(relative),
        relation="parent", relative_minor=False, bound_at=at or _now(),
    )
    return CloudEvent(id=str(uuid.uuid4()), source="/socialsec/card", type=card.FAMILY_BOUND, time=data.bound_at,
                      subject=binding_id, data=data.model_dump(mode="json"))


def unbound_event(binding_id: str, holder: str = ALICE, relative: str = BOB, at: Any = None) -> CloudEvent:
    data = card.FamilyUnbound(
        binding_id=binding_id, holder_id_hash=id_hash(holder), relative_id_hash=id_hash(relative),
        unbound_by="relative", unbound_at=at or _now(),
    )
    return CloudEvent(id=str(uuid.uuid4()), source="/socialsec/card", type=card.FAMILY_UNBOUND, time=data.unbound_at,
                      subject=binding_id, data=data.model_dump(mode="json"))


def _now() -> Any:
    return NOW


async def apply(world: PayWorld, event: CloudEvent) -> None:
    """Apply one card event as the feed consumer would (in its own transaction)."""
    async with world.svc.db.sessionmaker() as session, session.begin():
        await family.CARD_HANDLERS[event.type](session, event)


async def bind(world: PayWorld, holder: str = ALICE, relative: str = BOB) -> str:
    binding_id = str(uuid.uuid4())
    await apply(world, bound_event(binding_id, holder, relative))
    return binding_id


async def open_me(world: PayWorld, decl_id: str, prn: dict[str, Any] = HOLDER) -> Any:
    return await world.client.post(
        f"/contribution/v1/me/declarations/{decl_id}/payments", json={"channel": "alipay"},
        headers=world.headers(prn, str(uuid.uuid4())),
    )


async def bindings(world: PayWorld) -> list[FamilyBinding]:
    async with world.svc.db.sessionmaker() as s:
        return list((await s.execute(select(FamilyBinding))).scalars().all())


class TestPayingABoundRelativesDeclaration:
    async def test_holder_pays_paid_by_family_everywhere_and_a_certificate(self, world: PayWorld) -> None:
        await bind(world)
        async with world.svc.db.sessionmaker() as s, s.begin():
            s.add(KnownPerson(person_id=str(uuid.uuid4()), id_hash=id_hash(BOB), id_masked=mask_id_number(BOB)))
        decl_id = await world.declaration(BOB)
        r = await open_me(world, decl_id)
        assert r.status_code == 201, r.text
        p = r.json()
        assert p["paid_by"] == "family" and p["amount_fen"] == 630000
        total = f"{p['amount_fen'] // 100}.{p['amount_fen'] % 100:02d}"
        assert (await post_alipay(world, alipay_signed(p, total_amount=total))).text == "success"

        async with world.svc.db.sessionmaker() as s:
            payment = await s.get(Payment, p["id"])
            decl = await s.get(Declaration, decl_id)
            recs = list((await s.execute(select(ContributionRecord).where(ContributionRecord.declaration_id == decl_id)))
                        .scalars().all())
            assert payment is not None and decl is not None
            assert payment.status == "paid" and payment.paid_by == "family" and payment.certificate_code
            cert = await s.get(Certificate, payment.certificate_code)
            event = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == DECLARATION_PAID))).scalars().one()
        assert decl.status == "paid" and decl.paid_by == "family"
        assert len(recs) == 6 and {x.paid_by for x in recs} == {"family"}
        assert {x.person_key for x in recs} == {id_hash(BOB)}  # credited to the relative, not the payer
        assert cert is not None and cert.holder_id_masked == mask_id_number(BOB) and cert.holder_name is None
        assert event.data["paid_by"] == "family"

        # The relative sees the months as paid by family; the declaration answer says so too.
        r = await world.client.get("/contribution/v1/me/records?year=2026", headers=world.headers(RELATIVE))
        assert r.status_code == 200, r.text
        assert {i["paid_by"] for i in r.json()["items"]} == {"family"}
        r = await world.client.get(f"/contribution/v1/me/declarations/{decl_id}", headers=world.headers(RELATIVE))
        body = r.json()
        assert body["paid_by"] == "family" and body["payments"][0]["paid_by"] == "family"
        assert body["payments"][0]["certificate_code"] == payment.certificate_code
        # The holder may download the certificate of the payment they made.
        r = await world.client.get(f"/contribution/v1/me/payments/{p['id']}/certificate", headers=world.headers(HOLDER))
        assert r.status_code == 200 and r.content.startswith(b"%PDF")

    async def test_own_payment_is_not_family(self, world: PayWorld) -> None:
        await bind(world)
        decl_id = await world.declaration(ALICE)
        r = await open_me(world, decl_id)
        assert r.status_code == 201 and "paid_by" not in r.json()

    async def test_the_relatives_open_payment_is_not_handed_to_the_holder(self, world: PayWorld) -> None:
        await bind(world)
        decl_id = await world.declaration(BOB)
        assert (await open_me(world, decl_id, RELATIVE)).status_code == 201
        r = await open_me(world, decl_id, HOLDER)
        assert (r.status_code, r.json()["code"]) == (409, "payment_already_open")

    async def test_two_holders_of_one_relative_do_not_share_an_open_payment(self, world: PayWorld) -> None:
        await bind(world, ALICE, BOB)
        await bind(world, CAROL, BOB)
        decl_id = await world.declaration(BOB)
        first = await open_me(world, decl_id, HOLDER)
        assert first.status_code == 201
        again = await open_me(world, decl_id, HOLDER)
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        r = await open_me(world, decl_id, citizen(CAROL, "王五"))
        assert (r.status_code, r.json()["code"]) == (409, "payment_already_open")


class TestRefusals:
    async def test_not_bound_is_the_same_refusal_as_before(self, world: PayWorld) -> None:
        decl_id = await world.declaration(BOB)
        r = await open_me(world, decl_id)
        assert (r.status_code, r.json()["code"]) == (404, "declaration_not_found")
        assert DeclarationNotFoundUnlessBound.read_model == "card"
        r = await world.client.post(f"/contribution/v1/me/declarations/{decl_id}/payments", json={"channel": "alipay"},
                                    headers={**world.headers(HOLDER, str(uuid.uuid4())), "Accept-Language": "en"})
        assert r.status_code == 404 and r.json()["code"] == "declaration_not_found"

    async def test_bound_to_someone_else_or_the_reverse_direction(self, world: PayWorld) -> None:
        await bind(world, ALICE, CAROL)
        decl_id = await world.declaration(BOB)
        assert (await open_me(world, decl_id)).status_code == 404
        # ALICE bound BOB: BOB may not pay ALICE's declaration through it.
        await bind(world, ALICE, BOB)
        mine = await world.declaration(ALICE)
        r = await open_me(world, mine, RELATIVE)
        assert (r.status_code, r.json()["code"]) == (404, "declaration_not_found")

    async def test_a_relatives_declaration_is_paid_at_level_3_only(self, world: PayWorld) -> None:
        await bind(world)
        decl_id = await world.declaration(BOB)
        r = await open_me(world, decl_id, citizen(ALICE, "张三", level=2))
        assert (r.status_code, r.json()["code"], r.json()["required_level"]) == (403, "realname_level_too_low", 3)
        assert (await open_me(world, decl_id, HOLDER)).status_code == 201

    async def test_after_unbind(self, world: PayWorld) -> None:
        binding_id = await bind(world)
        decl_id = await world.declaration(BOB)
        await apply(world, unbound_event(binding_id))
        r = await open_me(world, decl_id)
        assert (r.status_code, r.json()["code"]) == (404, "declaration_not_found")
        r = await world.client.get(f"/contribution/v1/me/family/{binding_id}/declarations", headers=world.headers(HOLDER))
        assert (r.status_code, r.json()["code"]) == (404, "family_binding_not_found")

    async def test_refusal_catches_up_on_the_card_feed_first(self, world: PayWorld) -> None:
        """Bound a moment ago in card: the route applies card's feed before refusing, then pays."""
        decl_id = await world.declaration(BOB)
        binding_id = str(uuid.uuid4())

        class CardFeed:
            producer = "card"
            calls = 0

            async def catch_up(self, within_seconds: float) -> bool:
                CardFeed.calls += 1
                await apply(world, bound_event(binding_id))
                return True

        world.svc.app.state.feed_consumers = [*getattr(world.svc.app.state, "feed_consumers", []), CardFeed()]
        r = await open_me(world, decl_id)
        assert r.status_code == 201, r.text
        assert r.json()["paid_by"] == "family" and CardFeed.calls == 1


class TestRelativesDeclarations:
    async def test_holder_reads_the_relatives_declarations_while_bound(self, world: PayWorld) -> None:
        binding_id = await bind(world)
        async with world.svc.db.sessionmaker() as s, s.begin():
            s.add(KnownPerson(person_id=str(uuid.uuid4()), id_hash=id_hash(BOB), id_masked=mask_id_number(BOB)))
        first = await world.declaration(BOB, months=("2026-01",))
        world.svc.clock.advance(seconds=1)
        second = await world.declaration(BOB, months=("2026-02",))
        await world.declaration(ALICE, months=("2026-03",))
        url = f"/contribution/v1/me/family/{binding_id}/declarations"
        r = await world.client.get(url, headers=world.headers(HOLDER))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["binding_id"] == binding_id and body["relative_id_masked"] == mask_id_number(BOB)
        assert {i["id"] for i in body["items"]} == {first, second}
        assert BOB not in r.text and ALICE not in r.text
        r = await world.client.get(url + "?limit=1", headers=world.headers(HOLDER))
        page = r.json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        r = await world.client.get(url + f"?limit=1&cursor={page['next_cursor']}", headers=world.headers(HOLDER))
        assert len(r.json()["items"]) == 1 and r.json()["items"][0]["id"] != page["items"][0]["id"]

    async def test_only_the_holder_and_level_3(self, world: PayWorld) -> None:
        binding_id = await bind(world)
        url = f"/contribution/v1/me/family/{binding_id}/declarations"
        r = await world.client.get(url, headers=world.headers(RELATIVE))
        assert (r.status_code, r.json()["code"]) == (404, "family_binding_not_found")
        r = await world.client.get(url, headers=world.headers(citizen(CAROL, "王五")))
        assert r.status_code == 404
        r = await world.client.get(url, headers=world.headers(citizen(ALICE, level=2)))
        assert r.status_code == 403
        r = await world.client.get(f"/contribution/v1/me/family/{uuid.uuid4()}/declarations", headers=world.headers(HOLDER))
        assert r.status_code == 404
        r = await world.client.get(url)
        assert r.status_code == 401


class TestEvents:
    async def test_applied_twice_changes_nothing(self, world: PayWorld) -> None:
        binding_id = str(uuid.uuid4())
        event = bound_event(binding_id)
        await apply(world, event)
        await apply(world, event)
        [row] = await bindings(world)
        assert row.active and row.holder_id_hash == id_hash(ALICE) and row.relative_id_hash == id_hash(BOB)
        ended = unbound_event(binding_id, at=_now() + timedelta(minutes=5))
        await apply(world, ended)
        await apply(world, ended)
        await apply(world, event)  # a bound replay after the unbind
        [row] = await bindings(world)
        assert not row.active and row.unbound_at is not None and row.bound_at is not None

    async def test_unbound_before_bound_stays_ended(self, world: PayWorld) -> None:
        binding_id = str(uuid.uuid4())
        await apply(world, unbound_event(binding_id, at=_now() + timedelta(minutes=5)))
        [row] = await bindings(world)
        assert not row.active and row.bound_at is None
        await apply(world, bound_event(binding_id))
        [row] = await bindings(world)
        assert not row.active and row.bound_at is not None and row.unbound_at is not None
        decl_id = await world.declaration(BOB)
        assert (await open_me(world, decl_id)).status_code == 404

    async def test_a_new_binding_after_an_unbind_lets_the_holder_pay_again(self, world: PayWorld) -> None:
        old = await bind(world)
        await apply(world, unbound_event(old))
        await bind(world)
        decl_id = await world.declaration(BOB)
        assert (await open_me(world, decl_id)).status_code == 201

    def test_contribution_consumes_the_card_feed(self) -> None:
        from services.contribution.settings import Settings

        s = Settings(card_url="http://card:8003", registration_url="http://registration:8001")
        assert s.producer_urls() == {"registration": "http://registration:8001", "card": "http://card:8003"}
        assert set(family.CARD_HANDLERS) == {card.FAMILY_BOUND, card.FAMILY_UNBOUND}
