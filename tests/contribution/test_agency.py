"""Agency authorizations: a citizen lets an agency declare and pay for them, until a date, revocably."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from services.common.errors import DomainError
from services.common.principal import Principal
from services.contribution.declarations.crediting import get_payable_declaration
from services.contribution.models import AgencyAuthorization
from tests.contribution.conftest import AGENCY, ALICE, BOB, OTHER_UNIT, enrol_self, pay, rows
from tests.helpers import agency, citizen, employer

A = "/contribution/v1/me/agency-authorizations"
AD = "/contribution/v1/agency/declarations"


def agency_body(id_number: str = ALICE, months: list[str] | None = None) -> dict[str, Any]:
    return {"id_number": id_number, "category": "flexible", "region_code": "110105", "base_fen": 695700,
            "months": months or ["2026-03"]}


async def authorize(svc: Any, who: str = ALICE, until: str = "2026-12-31") -> Any:
    return await svc.client.post(A, json={"credit_code": AGENCY, "valid_until": until}, headers=svc.headers(citizen(who)))


class TestAuthorizations:
    async def test_anonymous_wrong_principal_and_level(self, svc: Any) -> None:
        body = {"credit_code": AGENCY, "valid_until": "2026-12-31"}
        assert (await svc.client.post(A, json=body)).status_code == 401
        assert (await svc.client.post(A, json=body, headers=svc.headers(agency(AGENCY)))).status_code == 403
        r = await svc.client.post(A, json=body, headers=svc.headers(citizen(ALICE, level=1)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(citizen(ALICE))
        r = await svc.client.post(A, json={"credit_code": "91110105MA0000002X", "valid_until": "2026-12-31"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "credit_code_invalid"
        r = await svc.client.post(A, json={"credit_code": AGENCY, "valid_until": "2026-02-30"}, headers=h)
        assert r.status_code == 422
        for until in ("2026-03-01", "2040-01-01"):
            r = await svc.client.post(A, json={"credit_code": AGENCY, "valid_until": until}, headers=h)
            assert r.status_code == 422 and r.json()["code"] == "authorization_invalid"

    async def test_create_list_and_revoke(self, svc: Any) -> None:
        r = await authorize(svc)
        assert r.status_code == 201, r.text
        auth = r.json()
        assert (auth["credit_code"], auth["status"], auth["valid_until"]) == (AGENCY, "active", "2026-12-31")
        h = svc.headers(citizen(ALICE))
        assert [i["id"] for i in (await svc.client.get(A, headers=h)).json()["items"]] == [auth["id"]]
        assert (await svc.client.delete(f"{A}/{auth['id']}", headers=svc.headers(citizen(BOB)))).status_code == 404
        assert (await svc.client.delete(f"{A}/{auth['id']}", headers=h)).status_code == 204
        assert (await svc.client.delete(f"{A}/{auth['id']}", headers=h)).status_code == 204
        assert (await svc.client.get(A, headers=h)).json()["items"][0]["status"] == "revoked"
        row = (await rows(svc, select(AgencyAuthorization)))[0]
        assert row.revoked_at is not None and ALICE not in row.person_key


class TestAgencyDeclaration:
    async def test_anonymous_and_wrong_principal(self, svc: Any) -> None:
        assert (await svc.client.post(AD, json=agency_body())).status_code == 401
        r = await svc.client.post(AD, json=agency_body(), headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"

    async def test_without_authorization_in_force_403(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        r = await svc.client.post(AD, json=agency_body(), headers=svc.headers(agency(AGENCY)))
        assert r.status_code == 403 and r.json()["code"] == "agency_not_authorized"
        auth = (await authorize(svc)).json()
        r = await svc.client.post(AD, json=agency_body(), headers=svc.headers(agency(OTHER_UNIT)))
        assert r.status_code == 403 and r.json()["code"] == "agency_not_authorized"
        await svc.client.delete(f"{A}/{auth['id']}", headers=svc.headers(citizen(ALICE)))
        r = await svc.client.post(AD, json=agency_body(), headers=svc.headers(agency(AGENCY)))
        assert r.status_code == 403

    async def test_authorization_lapses_after_its_date(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        await authorize(svc, until="2026-03-10")
        assert (await svc.client.post(AD, json=agency_body(), headers=svc.headers(agency(AGENCY)))).status_code == 201
        svc.clock.advance(days=1)
        r = await svc.client.post(AD, json=agency_body(months=["2026-04"]), headers=svc.headers(agency(AGENCY)))
        assert r.status_code == 403

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(agency(AGENCY))
        wrong = ALICE[:-1] + ("1" if ALICE[-1] != "1" else "2")  # one changed check digit
        r = await svc.client.post(AD, json=agency_body(id_number=wrong), headers=h)
        assert r.status_code == 422 and r.json()["code"] == "id_number_invalid"
        assert wrong not in r.text
        r = await svc.client.post(AD, json={**agency_body(), "months": ["2026-13"]}, headers=h)
        assert r.status_code == 422

    async def test_declares_and_pays_for_the_person(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        await authorize(svc)
        r = await svc.client.post(AD, json=agency_body(), headers=svc.headers(agency(AGENCY)))
        assert r.status_code == 201, r.text
        decl = r.json()
        assert (decl["status"], decl["source"], decl["agency_credit_code"], decl["total_fen"]) == (
            "awaiting_payment", "agency", AGENCY, 208710)
        assert ALICE not in r.text
        assert (await svc.client.get(f"{AD}/{decl['id']}", headers=svc.headers(agency(AGENCY)))).status_code == 200
        assert (await svc.client.get(f"{AD}/{decl['id']}", headers=svc.headers(agency(OTHER_UNIT)))).status_code == 404
        mine = await svc.client.get(f"/contribution/v1/me/declarations/{decl['id']}", headers=svc.headers(citizen(ALICE)))
        assert mine.status_code == 200 and mine.json()["source"] == "agency"
        async with svc.db.sessionmaker() as s:
            got = await get_payable_declaration(session=s, declaration_id=decl["id"],
                                                principal=Principal.model_validate(agency(AGENCY)), today=svc.clock.today())
            assert got.id == decl["id"]
            for prn in (agency(OTHER_UNIT), employer(AGENCY)):
                with pytest.raises(DomainError):
                    await get_payable_declaration(session=s, declaration_id=decl["id"],
                                                  principal=Principal.model_validate(prn), today=svc.clock.today())
        assert (await pay(svc, decl["id"])).paid_by == "agency"
        r = await svc.client.post("/contribution/v1/me/declarations",
                                  json={"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]},
                                  headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 409
