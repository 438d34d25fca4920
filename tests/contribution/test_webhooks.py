"""Webhooks of agencies and employers: the endpoint, signed deliveries from the outbox, retries, safety."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select, text
from standardwebhooks import Webhook, WebhookVerificationError

from services.common.models import OutboxEvent
from services.common.pii import id_hash, mask_id_number
from services.contribution.declarations.lifecycle import expire_due_declarations
from services.contribution.models import Declaration
from services.contribution.payments.crediting import credit_payment
from services.contribution.payments.models import Payment, Refund, RefundStatus
from services.contribution.payments.platforms import PaymentPlatforms
from services.contribution.payments.refunds import Answer, settle
from services.contribution.webhooks.delivery import BACKOFF, WebhookRuntime, fan_out, send_due
from services.contribution.webhooks.models import WebhookCursor, WebhookDelivery
from tests.contribution.conftest import AGENCY, ALICE, NOW, UNIT, enrol_self, hire, pay, register_unit, rows
from tests.helpers import agency, citizen, employer

W = "/contribution/v1/webhook"
RECEIVER = "https://hooks.agency.example/socialsec"
PUBLIC = "93.184.216.34"


class Recorder:
    """An httpx transport standing in for the receiver: records requests, answers `status`."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)


def resolver_of(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return list(table.get(host, []))
    return resolve


def install(svc: Any, *, transport: Any = None, table: dict[str, list[str]] | None = None) -> WebhookRuntime:
    client = httpx.AsyncClient(transport=httpx.MockTransport(transport or Recorder()), follow_redirects=False)
    rt = WebhookRuntime(svc.app.state.settings, client=client,
                        resolver=resolver_of(table if table is not None else {"hooks.agency.example": [PUBLIC]}))
    svc.app.state.webhook_runtime = rt
    return rt


@pytest.fixture
async def hooks(make_service: Any) -> Any:
    """The contribution service with a frozen clock, https-only webhooks, a resolver and receiver stand-in."""
    from services.common.clock import FrozenClock

    svc = await make_service("contribution", clock=FrozenClock(NOW))
    rt = install(svc)
    yield svc
    await rt.client.aclose()


@pytest.fixture
async def local(make_service: Any) -> Any:
    """The service as `make run` runs it: http receivers on 127.0.0.1 allowed."""
    from services.common.clock import FrozenClock

    svc = await make_service("contribution", clock=FrozenClock(NOW), webhook_allow_insecure=True)
    yield svc
    rt = getattr(svc.app.state, "webhook_runtime", None)
    if rt is not None:
        await rt.aclose()


async def put(svc: Any, prn: dict[str, Any], url: str = RECEIVER, events: list[str] | None = None, **h: str) -> Any:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    return await svc.client.put(W, json=body, headers=svc.headers(prn, **h))


async def agency_declaration(svc: Any, who: str = ALICE, months: list[str] | None = None) -> str:
    """A declaration the agency makes for an authorizing person (awaiting payment)."""
    await enrol_self(svc, who)
    r = await svc.client.post("/contribution/v1/me/agency-authorizations",
                              json={"credit_code": AGENCY, "valid_until": "2026-12-31"}, headers=svc.headers(citizen(who)))
    assert r.status_code == 201, r.text
    r = await svc.client.post("/contribution/v1/agency/declarations", headers=svc.headers(agency(AGENCY)), json={
        "id_number": who, "category": "flexible", "region_code": "110105", "base_fen": 695700,
        "months": months or ["2026-03"],
    })
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def paid_with_certificate(svc: Any, decl_id: str, *, opened_by: str = f"agency:{AGENCY}") -> tuple[str, str]:
    """A payment of the declaration credited, as a verified notification does; (payment id, certificate code)."""
    payment_id, code = str(uuid.uuid4()), "CERT" + uuid.uuid4().hex[:16]
    now = svc.clock.now()
    async with svc.db.sessionmaker() as s, s.begin():
        decl = await s.get(Declaration, decl_id)
        s.add(Payment(id=payment_id, declaration_id=decl_id, channel="alipay", out_trade_no=uuid.uuid4().hex[:32],
                      amount_fen=decl.total_fen, paid_amount_fen=decl.total_fen, status="paid", subject="社会保险费",
                      payer_ref="x", opened_by=opened_by, opened_at=now, closes_at=now + timedelta(minutes=30),
                      paid_at=now, certificate_code=code, holder_id_masked=mask_id_number(ALICE)))
    await pay(svc, decl_id, payment_id)
    return payment_id, code


async def deliveries(svc: Any) -> list[WebhookDelivery]:
    return await rows(svc, select(WebhookDelivery).order_by(WebhookDelivery.created_at))


async def fan(svc: Any) -> int:
    """Fan-out passes until every outbox row written so far is read (on PostgreSQL the feed may hold rows
    back while any transaction on the server is open); how many events were read."""
    async with svc.db.sessionmaker() as s:
        last = (await s.execute(select(OutboxEvent.txid, OutboxEvent.seq)
                                .order_by(OutboxEvent.txid.desc(), OutboxEvent.seq.desc()).limit(1))).first()
    target = f"{last.txid}.{last.seq}" if last else "0.0"
    total = 0
    for _ in range(600):
        total += await fan_out(db=svc.db, now=svc.clock.now())
        async with svc.db.sessionmaker() as s:
            at = (await s.execute(select(WebhookCursor.cursor))).scalar_one()
        if at == target:
            return total
        await asyncio.sleep(0.05)
    raise AssertionError("the fan-out never caught up with the outbox")


async def send(svc: Any) -> int:
    return await send_due(db=svc.db, rt=svc.app.state.webhook_runtime, clock=svc.clock)


# ---- the endpoint ---------------------------------------------------------------------------


class TestEndpoint:
    async def test_who_may_call(self, hooks: Any) -> None:
        assert (await hooks.client.get(W)).status_code == 401
        for prn in (citizen(ALICE), {"kind": "staff", "sub": "s", "staff_id": "S1", "roles": ["admin"]}):
            r = await put(hooks, prn)
            assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"

    async def test_create_read_rotate_delete(self, hooks: Any) -> None:
        a = agency(AGENCY)
        r = await hooks.client.get(W, headers=hooks.headers(a))
        assert r.status_code == 404 and r.json()["code"] == "webhook_not_found" and r.json()["title"] == "本单位尚未设置回调地址"
        r = await hooks.client.get(W, headers=hooks.headers(a, **{"Accept-Language": "en"}))
        assert r.json()["title"] == "No webhook endpoint for this unit"

        r = await put(hooks, a, events=["payment.succeeded"])
        assert r.status_code == 200, r.text
        ep = r.json()
        secret = ep["secret"]
        assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 24
        assert (ep["url"], ep["events"], ep["status"]) == (RECEIVER, ["payment.succeeded"], "enabled")
        # Shown once: never again, and stored encrypted.
        assert (await hooks.client.get(W, headers=hooks.headers(a))).json()["secret"] is None
        async with hooks.db.sessionmaker() as s:
            raw = (await s.execute(text("SELECT secret FROM webhook_endpoints"))).scalar_one()
        assert secret not in raw and "whsec_" not in raw

        r = await put(hooks, a, url=RECEIVER + "/v2")
        assert r.status_code == 200 and r.json()["id"] == ep["id"] and r.json()["secret"] is None
        assert r.json()["events"] == ["payment.succeeded", "declaration.expired", "payment.refund_pending", "payment.refunded"]

        r = await hooks.client.post(f"{W}/secret-rotation", headers=hooks.headers(a))
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        assert datetime.fromisoformat(rotated["previous_secret_expires_at"]) == NOW + timedelta(hours=24)

        # Another unit sees nothing of it; an employer has its own.
        assert (await hooks.client.get(W, headers=hooks.headers(employer(UNIT)))).status_code == 404
        assert (await hooks.client.delete(W, headers=hooks.headers(a))).status_code == 204
        assert (await hooks.client.get(W, headers=hooks.headers(a))).status_code == 404
        assert (await hooks.client.delete(W, headers=hooks.headers(a))).status_code == 404
        r = await hooks.client.post(f"{W}/secret-rotation", headers=hooks.headers(a))
        assert r.status_code == 404 and r.json()["code"] == "webhook_not_found"
        # Set again after deleting: a new endpoint and a new secret.
        r = await put(hooks, a)
        assert r.json()["id"] != ep["id"] and r.json()["secret"].startswith("whsec_")

    async def test_rotation_replays_with_its_idempotency_key(self, hooks: Any) -> None:
        a = agency(AGENCY)
        await put(hooks, a)
        h = hooks.headers(a, **{"Idempotency-Key": "rot-1"})
        first = (await hooks.client.post(f"{W}/secret-rotation", headers=h)).json()
        again = await hooks.client.post(f"{W}/secret-rotation", headers=h)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["secret"] == first["secret"]
        # The stored answer holds the secret, so it is stored encrypted, never readable in the table.
        from sqlalchemy import text

        async with hooks.db.sessionmaker() as s:
            stored = (await s.execute(text("SELECT response_body FROM idempotency_keys"))).scalars().all()
        assert stored and all(first["secret"] not in (b or "") and (b or "").startswith("enc:") for b in stored)

    async def test_bad_input(self, hooks: Any) -> None:
        a = agency(AGENCY)
        r = await put(hooks, a, events=["payment.succeeded", "card.lost"])
        assert r.status_code == 422 and r.json()["code"] == "webhook_event_unknown"
        assert r.json()["unknown"] == ["card.lost"]
        r = await put(hooks, a, events=[])
        assert r.status_code == 422 and r.json()["code"] == "webhook_event_unknown"
        for url in ("not a url", "ftp://hooks.agency.example/x", "https://user:pw@hooks.agency.example/x",
                    "https://hooks.agency.example/x#frag", "/relative", "https://" + "a" * 2100 + ".example/"):
            r = await put(hooks, a, url=url)
            assert r.status_code == 422 and r.json()["code"] == "webhook_url_invalid", url[:40]
        r = await put(hooks, a, url="https://nowhere.example/x")
        assert r.status_code == 422 and r.json()["code"] == "webhook_url_invalid" and r.json()["reason"] == "unresolvable"
        r = await hooks.client.put(W, json={"url": RECEIVER, "extra": 1}, headers=hooks.headers(a))
        assert r.status_code == 422
        r = await hooks.client.get(f"{W}/deliveries?cursor=%%%", headers=hooks.headers(a))
        assert r.status_code == 422 and r.json()["code"] == "cursor_invalid"
        r = await hooks.client.get(f"{W}/deliveries?status=lost", headers=hooks.headers(a))
        assert r.status_code == 422


class TestForbiddenUrls:
    @pytest.mark.parametrize(("address", "why"), [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.5", "private"),
        ("192.168.1.10", "private"), ("fc00::1", "private"), ("169.254.10.1", "link_local"), ("fe80::1", "link_local"),
        ("100.64.0.1", "cgnat"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
        ("::", "unspecified"), ("169.254.169.254", "metadata"), ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ])
    async def test_every_forbidden_class_is_refused(self, hooks: Any, address: str, why: str) -> None:
        install(hooks, table={"hooks.agency.example": [address]})
        r = await put(hooks, agency(AGENCY))
        assert r.status_code == 422 and r.json()["code"] == "webhook_url_forbidden", r.text
        assert r.json()["reason"] == why
        literal = f"[{address}]" if ":" in address else address
        r = await put(hooks, agency(AGENCY), url=f"https://{literal}/hook")
        assert r.status_code == 422 and r.json()["reason"] == why

    async def test_every_address_is_checked_and_http_is_refused(self, hooks: Any) -> None:
        install(hooks, table={"hooks.agency.example": [PUBLIC, "10.0.0.7"]})
        r = await put(hooks, agency(AGENCY))
        assert r.status_code == 422 and r.json()["reason"] == "private"
        install(hooks)
        r = await put(hooks, agency(AGENCY), url="http://hooks.agency.example/x", **{"Accept-Language": "en"})
        assert r.status_code == 422 and r.json()["code"] == "webhook_url_forbidden" and r.json()["reason"] == "not_https"
        assert r.json()["detail"] == "Only https URLs are accepted"
        assert (await put(hooks, agency(AGENCY))).status_code == 200

    async def test_checked_again_at_send_time_and_pinned(self, hooks: Any) -> None:
        recorder = Recorder()
        install(hooks, transport=recorder)
        assert (await put(hooks, agency(AGENCY))).status_code == 200
        await paid_with_certificate(hooks, await agency_declaration(hooks))
        await fan(hooks)
        # The name now points inside (DNS rebinding): nothing is sent, the attempt fails.
        rt = install(hooks, transport=recorder, table={"hooks.agency.example": ["192.168.0.1"]})
        assert await send(hooks) == 1
        assert recorder.requests == []
        (d,) = await deliveries(hooks)
        assert (d.status, d.attempts, d.last_error) == ("pending", 1, "address_forbidden: private")
        await rt.client.aclose()
        # Back to a public address: the connection goes to the checked address, the name in Host and SNI.
        install(hooks, transport=recorder)
        hooks.clock.advance(seconds=5)
        assert await send(hooks) == 1
        (req,) = recorder.requests
        assert req.url.host == PUBLIC and req.url.path == "/socialsec"
        assert req.headers["host"] == "hooks.agency.example" and req.extensions["sni_hostname"] == "hooks.agency.example"
        assert (await deliveries(hooks))[0].status == "succeeded"

    async def test_a_redirect_is_not_followed(self, hooks: Any) -> None:
        recorder = Recorder(status=302)
        install(hooks, transport=recorder)
        await put(hooks, agency(AGENCY))
        await paid_with_certificate(hooks, await agency_declaration(hooks))
        await fan(hooks)
        await send(hooks)
        (d,) = await deliveries(hooks)
        assert (d.status, d.last_status_code, d.last_error) == ("pending", 302, "redirect_not_followed")
        assert len(recorder.requests) == 1


# ---- deliveries ------------------------------------------------------------------------------


class TestDeliveries:
    async def test_payment_succeeded_once_per_endpoint_and_no_full_id_number(self, hooks: Any) -> None:
        recorder = Recorder()
        install(hooks, transport=recorder)
        await put(hooks, agency(AGENCY))
        await put(hooks, employer(UNIT))  # another unit: not its event
        decl = await agency_declaration(hooks)
        payment_id, code = await paid_with_certificate(hooks, decl)
        assert await fan(hooks) >= 1
        assert await fan(hooks) == 0  # the pass again: nothing new
        (d,) = await deliveries(hooks)
        assert (d.credit_code, d.event_type, d.status) == (AGENCY, "payment.succeeded", "pending")
        body = json.loads(d.payload)
        assert body["type"] == "payment.succeeded" and body["timestamp"] == NOW.isoformat()
        data = body["data"]
        assert (data["declaration_id"], data["payment_id"], data["channel"], data["months"]) == (decl, payment_id, "alipay", ["2026-03"])
        assert data["certificate_code"] == code and data["amount_fen"] > 0 and isinstance(data["amount_fen"], int)
        assert data["person_id_masked"] == mask_id_number(ALICE)
        assert ALICE not in d.payload and id_hash(ALICE) not in d.payload
        assert await send(hooks) == 1 and await send(hooks) == 0
        (req,) = recorder.requests
        assert req.headers["webhook-id"] == d.event_id and req.content.decode() == d.payload
        assert ALICE not in req.content.decode()
        r = await hooks.client.get(f"{W}/deliveries", headers=hooks.headers(agency(AGENCY)))
        (item,) = r.json()["items"]
        assert (item["status"], item["attempts"], item["payload"]["data"]["certificate_code"]) == ("succeeded", 1, code)
        assert (await hooks.client.get(f"{W}/deliveries", headers=hooks.headers(employer(UNIT)))).json()["items"] == []

    async def test_two_passes_at_once_make_one_delivery(self, hooks: Any) -> None:
        await put(hooks, agency(AGENCY))
        for who, months in ((ALICE, ["2026-03"]), (ALICE, ["2026-02"])):
            await paid_with_certificate(hooks, await agency_declaration(hooks, who, months))
        await asyncio.gather(*(fan_out(db=hooks.db, now=hooks.clock.now()) for _ in range(3)))
        await asyncio.gather(fan(hooks), fan(hooks))
        found = await deliveries(hooks)
        assert len(found) == 2 and len({d.event_id for d in found}) == 2

    async def test_retries_with_backoff_then_failed(self, hooks: Any) -> None:
        recorder = Recorder(status=500)
        install(hooks, transport=recorder)
        await put(hooks, agency(AGENCY))
        await paid_with_certificate(hooks, await agency_declaration(hooks))
        await fan(hooks)
        start = hooks.clock.now()
        assert await send(hooks) == 1
        waited = timedelta(0)
        for n, delay in enumerate(BACKOFF, start=1):
            (d,) = await deliveries(hooks)
            assert (d.status, d.attempts, d.last_status_code, d.last_error) == ("pending", n, 500, "http_500")
            assert d.next_attempt_at == hooks.clock.now() + delay
            hooks.clock.advance(seconds=delay.total_seconds() - 1)
            assert await send(hooks) == 0  # not due yet
            hooks.clock.advance(seconds=1)
            waited += delay
            assert await send(hooks) == 1
        (d,) = await deliveries(hooks)
        assert (d.status, d.attempts, d.next_attempt_at) == ("failed", 8, None)
        assert len(recorder.requests) == 8
        assert waited == timedelta(seconds=5, minutes=35, hours=27) and hooks.clock.now() - start == waited
        # The unit sees it failed, and sends it again.
        a = hooks.headers(agency(AGENCY))
        r = await hooks.client.get(f"{W}/deliveries?status=failed", headers=a)
        assert [i["id"] for i in r.json()["items"]] == [d.id]
        recorder.status = 200
        r = await hooks.client.post(f"{W}/deliveries/{d.id}/retry", headers=a)
        assert r.status_code == 200 and r.json()["status"] == "pending"
        assert await send(hooks) == 1
        assert (await deliveries(hooks))[0].status == "succeeded"
        r = await hooks.client.post(f"{W}/deliveries/{d.id}/retry", headers=hooks.headers(employer(UNIT)))
        assert r.status_code == 404 and r.json()["code"] == "webhook_delivery_not_found"

    async def test_an_endpoint_failing_for_5_days_is_disabled(self, hooks: Any) -> None:
        recorder = Recorder(status=503)
        install(hooks, transport=recorder)
        await put(hooks, agency(AGENCY))
        await paid_with_certificate(hooks, await agency_declaration(hooks, ALICE, ["2026-03"]))
        await fan(hooks)
        await send(hooks)
        hooks.clock.advance(days=4, hours=23)
        await paid_with_certificate(hooks, await agency_declaration(hooks, ALICE, ["2026-02"]))
        await fan(hooks)
        await send(hooks)
        a = hooks.headers(agency(AGENCY))
        assert (await hooks.client.get(W, headers=a)).json()["status"] == "enabled"
        hooks.clock.advance(hours=1)
        await send(hooks)
        ep = (await hooks.client.get(W, headers=a)).json()
        assert (ep["status"], ep["disabled_reason"]) == ("disabled", "failing_for_5_days")
        assert datetime.fromisoformat(ep["failing_since"]) == NOW
        assert "连续5天投递失败" in ep["disabled_message"] and "http_503" in ep["disabled_message"]
        en = (await hooks.client.get(W, headers=hooks.headers(agency(AGENCY), **{"Accept-Language": "en"}))).json()
        assert en["disabled_message"].startswith("Disabled: every delivery failed for 5 days")
        found = await deliveries(hooks)
        assert {d.status for d in found} == {"failed"}
        r = await hooks.client.post(f"{W}/deliveries/{found[0].id}/retry", headers=a)
        assert r.status_code == 409 and r.json()["code"] == "webhook_disabled"
        # No new deliveries while disabled; setting it again enables it.
        await paid_with_certificate(hooks, await agency_declaration(hooks, ALICE, ["2026-01"]))
        await fan(hooks)
        assert len(await deliveries(hooks)) == 2
        ep = (await put(hooks, agency(AGENCY))).json()
        assert (ep["status"], ep["disabled_reason"], ep["failing_since"]) == ("enabled", None, None)
        recorder.status = 204
        r = await hooks.client.post(f"{W}/deliveries/{found[0].id}/retry", headers=a)
        assert r.status_code == 200
        assert await send(hooks) == 1

    async def test_a_receiver_that_does_not_answer_is_retried(self, hooks: Any) -> None:
        def silent(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("no answer", request=request)

        install(hooks, transport=silent)
        await put(hooks, agency(AGENCY))
        await paid_with_certificate(hooks, await agency_declaration(hooks))
        await fan(hooks)
        assert await send(hooks) == 1
        (d,) = await deliveries(hooks)
        assert (d.status, d.attempts, d.last_error, d.last_status_code) == ("pending", 1, "timeout", None)
        assert d.next_attempt_at == hooks.clock.now() + timedelta(seconds=5)
        assert hooks.app.state.settings.webhook_timeout_seconds == 10

    async def test_declaration_expired_goes_to_the_employer(self, hooks: Any) -> None:
        await register_unit(hooks)
        await hire(hooks, ALICE, 1_000_000)
        await put(hooks, employer(UNIT), events=["declaration.expired"])
        r = await hooks.client.post(f"/contribution/v1/employers/{UNIT}/declarations", json={"month": "2026-03"},
                                    headers=hooks.headers(employer(UNIT)))
        assert r.status_code == 201, r.text
        decl = r.json()["id"]
        hooks.clock.advance(days=2)
        async with hooks.db.sessionmaker() as s, s.begin():
            assert await expire_due_declarations(session=s, now=hooks.clock.now()) == 1
        events = await rows(hooks, select(OutboxEvent).where(OutboxEvent.type == "contribution.declaration.expired.v1"))
        assert [e.data["declaration_id"] for e in events] == [decl]
        await fan(hooks)
        (d,) = await deliveries(hooks)
        body = json.loads(d.payload)
        assert (d.credit_code, body["type"], body["data"]["declaration_id"]) == (UNIT, "declaration.expired", decl)
        assert body["data"]["credit_code"] == UNIT and body["data"]["person_id_masked"] is None
        assert ALICE not in d.payload

    async def test_refund_pending_goes_to_the_agency(self, hooks: Any) -> None:
        await put(hooks, agency(AGENCY), events=["payment.refund_pending"])
        decl = await agency_declaration(hooks)
        await paid_with_certificate(hooks, decl)
        # A second payment of the same declaration is credited later: the money must be refunded.
        second = str(uuid.uuid4())
        now = hooks.clock.now()
        async with hooks.db.sessionmaker() as s, s.begin():
            total = (await s.get(Declaration, decl)).total_fen
            s.add(Payment(id=second, declaration_id=decl, open_declaration_id=decl, channel="wechat",
                          out_trade_no=uuid.uuid4().hex[:32], amount_fen=total, status="open", subject="社会保险费",
                          payer_ref="x", opened_by=f"agency:{AGENCY}", opened_at=now, closes_at=now + timedelta(minutes=30)))
        async with hooks.db.sessionmaker() as s, s.begin():
            outcome = await credit_payment(session=s, payment_id=second, platform_trade_no="T1", paid_amount_fen=total,
                                           paid_at=now, now=now)
        assert outcome == "refund_pending"
        (ev,) = await rows(hooks, select(OutboxEvent).where(OutboxEvent.type == "contribution.payment.refund_pending.v1"))
        assert (ev.data["payment_id"], ev.data["reason"], ev.data["amount_fen"]) == (second, "declaration_already_paid", total)
        await fan(hooks)
        (d,) = await deliveries(hooks)  # payment.succeeded is not subscribed
        body = json.loads(d.payload)
        assert (d.credit_code, body["type"]) == (AGENCY, "payment.refund_pending")
        assert (body["data"]["payment_id"], body["data"]["channel"], body["data"]["amount_fen"]) == (second, "wechat", total)
        assert body["data"]["person_id_masked"] == mask_id_number(ALICE) and ALICE not in d.payload

    async def test_refunded_goes_to_the_agency(self, hooks: Any) -> None:
        await put(hooks, agency(AGENCY), events=["payment.refunded"])
        decl = await agency_declaration(hooks)
        await paid_with_certificate(hooks, decl)
        now = hooks.clock.now()
        async with hooks.db.sessionmaker() as s, s.begin():
            payment = (await s.execute(select(Payment).where(Payment.declaration_id == decl))).scalars().one()
            refund = Refund(id=str(uuid.uuid4()), payment_id=payment.id, channel=payment.channel,
                            out_refund_no="RF" + uuid.uuid4().hex[:24], amount_fen=payment.amount_fen,
                            status="processing", reason="申请人撤回", uncredit=True, requested_by="staff:S9001",
                            requested_at=now, attempts=0)
            s.add(refund)
            await s.flush()
            platforms = PaymentPlatforms(hooks.app.state.settings)
            assert await settle(s, platforms, refund.id, Answer(RefundStatus.succeeded), now) == "succeeded"
        await fan(hooks)
        (d,) = await deliveries(hooks)
        body = json.loads(d.payload)
        assert (d.credit_code, body["type"]) == (AGENCY, "payment.refunded")
        data = body["data"]
        assert (data["payment_id"], data["refund_id"], data["uncredited"]) == (payment.id, refund.id, True)
        assert data["amount_fen"] == data["refunded_total_fen"] == payment.amount_fen
        assert data["person_id_masked"] == mask_id_number(ALICE) and ALICE not in d.payload

    async def test_a_citizens_own_payment_goes_to_no_unit(self, hooks: Any) -> None:
        await put(hooks, agency(AGENCY))
        await enrol_self(hooks, ALICE)
        h = hooks.headers(citizen(ALICE))
        r = await hooks.client.post("/contribution/v1/me/declarations", headers=h, json={
            "category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]})
        decl = r.json()["id"]
        await hooks.client.post(f"/contribution/v1/me/declarations/{decl}/confirm", headers=h)
        await paid_with_certificate(hooks, decl, opened_by="citizen:sandbox-alipay:x")
        assert await fan(hooks) >= 1
        assert await deliveries(hooks) == []


# ---- a real receiver over a socket: signatures during a rotation -----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """An ASGI receiver served by uvicorn on 127.0.0.1: keeps each request's headers and body."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.got.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    return server, task, port


async def test_signatures_verify_with_both_secrets_during_a_rotation(local: Any) -> None:
    receiver = Receiver()
    server, task, port = await serve(receiver)
    try:
        # The standardwebhooks library checks the timestamp against the real time.
        local.clock.set(datetime.now(UTC).replace(microsecond=0))
        a = agency(AGENCY)
        r = await put(local, a, url=f"http://127.0.0.1:{port}/hook")
        assert r.status_code == 200, r.text
        old = r.json()["secret"]
        await paid_with_certificate(local, await agency_declaration(local, ALICE, ["2026-03"]))
        await fan(local)
        assert await send(local) == 1
        new = (await local.client.post(f"{W}/secret-rotation", headers=local.headers(a))).json()["secret"]
        await paid_with_certificate(local, await agency_declaration(local, ALICE, ["2026-02"]))
        await fan(local)
        assert await send(local) == 1
        (h1, b1), (h2, b2) = receiver.got
        assert Webhook(old).verify(b1, h1)["type"] == "payment.succeeded"
        with pytest.raises(WebhookVerificationError):
            Webhook(new).verify(b1, h1)
        assert len(h2["webhook-signature"].split(" ")) == 2
        assert Webhook(new).verify(b2, h2)["data"]["months"] == ["2026-02"]
        assert Webhook(old).verify(b2, h2)["data"]["months"] == ["2026-02"]
        assert h2["webhook-timestamp"] == str(int(local.clock.now().timestamp()))
        # After 24 hours only the new secret signs.
        local.clock.advance(hours=24, seconds=1)
        await paid_with_certificate(local, await agency_declaration(local, ALICE, ["2026-01"]))
        await fan(local)
        local.clock.set(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=24, seconds=1))
        assert await send(local) == 1
        h3, b3 = receiver.got[2]
        assert len(h3["webhook-signature"].split(" ")) == 1
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(b3, {**h3, "webhook-timestamp": h3["webhook-timestamp"]})
        for _h, b in receiver.got:
            assert ALICE.encode() not in b
    finally:
        server.should_exit = True
        await task


def write_readme_receiver(folder: Any) -> None:
    """The README's receiver example, written out as `receiver.py`."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if b.startswith("# receiver.py")]
    (folder / "receiver.py").write_text(code, encoding="utf-8")


async def test_the_readme_receiver_accepts_our_deliveries_and_refuses_forgeries(local: Any, tmp_path: Any,
                                                                                 monkeypatch: Any) -> None:
    """The receiver printed in README "For partners", run as it is, against the sender."""
    import importlib.util

    write_readme_receiver(tmp_path)
    local.clock.set(datetime.now(UTC).replace(microsecond=0))
    r = await put(local, agency(AGENCY), url="http://127.0.0.1:1/placeholder")
    monkeypatch.setenv("WEBHOOK_SECRET", r.json()["secret"])
    spec = importlib.util.spec_from_file_location("readme_receiver", tmp_path / "receiver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server, task, port = await serve(module.app)
    try:
        url = f"http://127.0.0.1:{port}/socialsec/webhook"
        assert (await put(local, agency(AGENCY), url=url)).status_code == 200
        await paid_with_certificate(local, await agency_declaration(local))
        await fan(local)
        assert await send(local) == 1
        (d,) = await deliveries(local)
        assert d.status == "succeeded" and d.last_status_code == 204
        (event,) = module.handled
        assert event["type"] == "payment.succeeded" and event["data"]["person_id_masked"] == mask_id_number(ALICE)
        # A forged or altered body is refused by the receiver.
        forged = d.payload.replace('"amount_fen":', '"amount_fen":1')
        async with httpx.AsyncClient() as client:
            r = await client.post(url, content=forged, headers={
                "webhook-id": d.event_id, "webhook-timestamp": str(int(local.clock.now().timestamp())),
                "webhook-signature": "v1,AAAA", "content-type": "application/json"})
        assert r.status_code == 400 and len(module.handled) == 1
    finally:
        server.should_exit = True
        await task
