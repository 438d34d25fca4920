"""Idempotency keys, personal data at rest, identifiers, logs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, text

from services.card.service import mask_card_no
from services.common.identifiers import (
    RegionCode,
    id_number_info,
    is_valid_credit_code,
    is_valid_id_number,
    normalize_id_number,
    region_candidates,
)
from services.common.models import AuditEntry, IdempotencyKey, OutboxEvent
from services.common.pii import mask_id_number, redact
from tests.common.conftest import Widget
from tests.helpers import citizen, make_id_number, principal_headers, staff

IDN = make_id_number()


def _cit(idn: str = IDN) -> dict[str, str]:
    return principal_headers("registration", citizen(idn))


async def _count(svc, model) -> int:
    async with svc.db.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


class TestIdempotency:
    async def test_same_key_same_body_replays_first_answer(self, ksvc):
        h = {**_cit(), "Idempotency-Key": "k-1"}
        body = {"id_number": IDN, "name": "张三"}
        r1 = await ksvc.client.post("/t/widgets", json=body, headers=h)
        r2 = await ksvc.client.post("/t/widgets", json={"name": "张三", "id_number": IDN}, headers=h)
        assert r1.status_code == r2.status_code == 201
        assert r1.json() == r2.json()
        assert r2.headers.get("idempotent-replayed") == "true"
        assert await _count(ksvc, Widget) == 1
        assert await _count(ksvc, OutboxEvent) == 1

    async def test_same_key_other_body_is_422(self, ksvc):
        h = {**_cit(), "Idempotency-Key": "k-2"}
        assert (await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=h)).status_code == 201
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "b"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
        assert await _count(ksvc, Widget) == 1

    async def test_keys_are_scoped_to_the_principal(self, ksvc):
        other = make_id_number(seq="003")
        h1 = {**_cit(), "Idempotency-Key": "shared"}
        h2 = {**_cit(other), "Idempotency-Key": "shared"}
        assert (await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=h1)).status_code == 201
        assert (await ksvc.client.post("/t/widgets", json={"id_number": other, "name": "a"}, headers=h2)).status_code == 201
        assert await _count(ksvc, Widget) == 2

    async def test_failed_request_does_not_burn_the_key(self, ksvc):
        h = {**_cit(), "Idempotency-Key": "k-3"}
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": ""}, headers=h)
        assert r.status_code == 422
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "ok"}, headers=h)
        assert r.status_code == 201

    async def test_a_refusal_that_keeps_its_changes_commits_them_and_frees_the_key(self, ksvc):
        h = {**_cit(), "Idempotency-Key": "guess-1"}
        r = await ksvc.client.post("/t/guesses", json={"guess": "wrong"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "guess_wrong"
        async with ksvc.db.sessionmaker() as s:
            assert (await s.execute(select(Widget.name))).scalars().all() == ["try:wrong"]  # the try is counted
        assert await _count(ksvc, IdempotencyKey) == 0  # the refusal was not stored under the key
        r = await ksvc.client.post("/t/guesses", json={"guess": "right"}, headers=h)  # same key, other body
        assert r.status_code == 201 and r.json() == {"ok": True}
        assert await _count(ksvc, Widget) == 2 and await _count(ksvc, IdempotencyKey) == 1

    async def test_required_key(self, ksvc):
        r = await ksvc.client.post("/t/pay", json={}, headers=_cit())
        assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
        r = await ksvc.client.post("/t/pay", json={}, headers={**_cit(), "Idempotency-Key": "p-1"})
        assert r.status_code == 201

    async def test_concurrent_requests_with_one_key_make_one_effect(self, ksvc):
        h = {**_cit(), "Idempotency-Key": "race"}
        body = {"id_number": IDN, "name": "并发"}
        rs = await asyncio.gather(*[ksvc.client.post("/t/widgets", json=body, headers=h) for _ in range(8)])
        assert [r.status_code for r in rs].count(201) == 8, [r.text for r in rs]
        assert len({r.json()["id"] for r in rs}) == 1
        assert await _count(ksvc, Widget) == 1
        assert await _count(ksvc, IdempotencyKey) == 1

    async def test_expired_key_is_reusable(self, ksvc):
        from datetime import timedelta

        h = {**_cit(), "Idempotency-Key": "old"}
        assert (await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=h)).status_code == 201
        async with ksvc.db.sessionmaker() as s:
            row = (await s.execute(select(IdempotencyKey))).scalar_one()
            row.expires_at = row.created_at - timedelta(seconds=1)
            await s.commit()
        other = make_id_number(seq="005")
        r = await ksvc.client.post("/t/widgets", json={"id_number": other, "name": "b"}, headers={**_cit(other), "Idempotency-Key": "old"})
        assert r.status_code == 201


class TestPersonalData:
    async def test_id_number_is_encrypted_at_rest_and_hash_is_keyed(self, ksvc):
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN.lower(), "name": "a"}, headers=_cit())
        assert r.status_code == 201
        assert r.json()["id_number_masked"] == IDN[:6] + "********" + IDN[-4:]
        async with ksvc.db.sessionmaker() as s:
            raw = (await s.execute(text("SELECT id_hash, id_number FROM test_widgets"))).one()
            assert IDN not in raw.id_number and IDN[6:14] not in raw.id_number
            assert IDN not in raw.id_hash
            w = (await s.execute(select(Widget))).scalar_one()
            assert w.id_number == IDN  # decrypts transparently

    async def test_staff_action_is_audited(self, ksvc):
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"},
                                   headers=principal_headers("registration", staff("operator", staff_id="S42")))
        assert r.status_code == 201
        async with ksvc.db.sessionmaker() as s:
            a = (await s.execute(select(AuditEntry))).scalar_one()
        assert (a.actor, a.action, a.target_type, a.reason) == ("staff:S42", "widget.create", "widget", "test")
        assert a.request_id == r.headers["x-request-id"]

    async def test_logs_never_hold_a_raw_id_number(self, ksvc):
        import io

        from services.common.logging import RedactingJsonFormatter

        buf = io.StringIO()
        handler = logging.StreamHandler(buf)
        handler.setFormatter(RedactingJsonFormatter("registration"))
        logging.getLogger().addHandler(handler)
        try:
            logging.getLogger("socialsec.test").info("looking up %s", IDN)
            r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=_cit())
            assert r.status_code == 201
            r = await ksvc.client.get("/t/boom")
            assert r.status_code == 500
        finally:
            logging.getLogger().removeHandler(handler)
        err = buf.getvalue()
        assert "110105199001010010" not in err and IDN not in err
        assert "110105********" in err

    def test_masks(self):
        assert mask_id_number("110101199001018515") == "110101********8515"
        assert mask_card_no("J12345678") == "J******78"
        assert redact("id 11010519491231002X and 34052419800101001x.") == "id 110105********002X and 340524********001x."


class TestIdentifiers:
    @pytest.mark.parametrize("v", ["11010519491231002X", "440524188001010014", "34052419800101001X", "34052419800101001x"])
    def test_valid_ids(self, v):
        assert is_valid_id_number(v)

    def test_every_single_digit_change_fails(self):
        base = "11010519491231002X"
        for i in range(17):
            for d in "0123456789":
                if d != base[i]:
                    changed = base[:i] + d + base[i + 1:]
                    if is_valid_id_number(changed):
                        # A change may land on another valid id only if the check digit matches by chance;
                        # GB 11643's mod-11 check detects every single-digit error.
                        pytest.fail(f"{changed} accepted")

    @pytest.mark.parametrize("v", ["11010519491331002X", "110105194902300027", "110105209901010015", "1101051949123100", "11010519491231002Y"])
    def test_invalid_ids(self, v):
        assert not is_valid_id_number(v)

    def test_info_and_normalisation(self):
        assert normalize_id_number("34052419800101001x") == "34052419800101001X"
        info = id_number_info("440524188001010014")
        assert (info.birth_date.isoformat(), info.sex) == ("1880-01-01", "male")
        assert id_number_info("11010519491231002X").sex == "female"

    def test_credit_codes(self):
        assert is_valid_credit_code("91350100M000100Y43")
        assert not is_valid_credit_code("91350100M000100Y44")
        assert not is_valid_credit_code("91350100I000100Y43")  # I is not in the alphabet

    @pytest.mark.parametrize("bad", ["11010", "1101050", "A10105", "010105", "11 105", "1" * 10_000])
    def test_every_malformed_region_code_says_so(self, bad):
        with pytest.raises(ValidationError) as caught:
            TypeAdapter(RegionCode).validate_python(bad)
        assert [e["type"] for e in caught.value.errors()] == ["region_code_invalid"]
        assert TypeAdapter(RegionCode).validate_python("110105") == "110105"

    def test_region_fallback(self):
        assert region_candidates("110105") == ["110105", "110100", "110000"]
        assert region_candidates("110000") == ["110000"]


class TestTransactionBoundary:
    async def test_a_failing_commit_is_an_error_answer_not_a_201(self, ksvc, monkeypatch):
        from sqlalchemy.ext.asyncio import AsyncSession

        real_commit = AsyncSession.commit

        async def failing_commit(self):
            raise RuntimeError("disk full")

        monkeypatch.setattr(AsyncSession, "commit", failing_commit)
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=_cit())
        monkeypatch.setattr(AsyncSession, "commit", real_commit)
        # The commit runs before the response is sent, so the client hears about the failure.
        assert r.status_code == 500 and r.json()["code"] == "internal_error"
        assert await _count(ksvc, Widget) == 0
