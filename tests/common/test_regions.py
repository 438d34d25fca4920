"""Region codes (GB/T 2260): the shipped table, full names, and unknown codes refused by every service."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.common import regions
from services.common.identifiers import RegionCode, id_number_info, normalize_id_number
from services.common.regions import (
    MUNICIPAL_CITY_CODES,
    is_known_region,
    known_codes,
    region_code_pattern,
    region_full_name,
    region_name,
)
from tests.helpers import citizen, make_credit_code, make_id_number, staff

REGION = TypeAdapter(RegionCode)
FONT = Path(regions.__file__).parents[1] / "contribution" / "payments" / "fonts" / "NotoSansSC-Subset.ttf"


class TestTable:
    def test_size_and_levels(self) -> None:
        table = regions.TABLE_FILE.read_text(encoding="utf-8").splitlines()
        assert table[0] == "code,name" and regions.TABLE_FILE.name == "gb2260-202609.csv"
        codes = [line.split(",")[0] for line in table[1:]]
        assert codes == sorted(codes) and len(codes) == len(set(codes)) == 3214
        provinces = [c for c in codes if c.endswith("0000")]
        cities = [c for c in codes if c.endswith("00") and not c.endswith("0000")]
        assert len(provinces) == 34 and len(cities) == 333 and len(codes) - 34 - 333 == 2847
        assert known_codes() == set(codes) | MUNICIPAL_CITY_CODES

    def test_loaded_once_and_fast(self) -> None:
        assert regions._table() is regions._table()
        started = time.perf_counter()
        for _ in range(100_000):
            is_known_region("110105")
        assert time.perf_counter() - started < 1.0

    @pytest.mark.parametrize(("code", "own", "full"), [
        ("110000", "北京市", "北京市"),
        ("110105", "朝阳区", "北京市朝阳区"),
        ("310104", "徐汇区", "上海市徐汇区"),
        ("500229", "城口县", "重庆市城口县"),
        ("130100", "石家庄市", "河北省石家庄市"),
        ("130102", "长安区", "河北省石家庄市长安区"),
        ("440305", "南山区", "广东省深圳市南山区"),
        ("441900", "东莞市", "广东省东莞市"),  # a city without counties
        ("429004", "仙桃市", "湖北省仙桃市"),  # a county-level city under the province
        ("659001", "石河子市", "新疆维吾尔自治区石河子市"),
        ("653132", "岑岭县", "新疆维吾尔自治区喀什地区岑岭县"),  # set up in 2026
        ("710000", "台湾省", "台湾省"),
        ("810000", "香港特别行政区", "香港特别行政区"),
    ])
    def test_names(self, code: str, own: str, full: str) -> None:
        assert is_known_region(code) and region_name(code) == own and region_full_name(code) == full

    def test_municipality_city_levels_name_the_municipality(self) -> None:
        for code in ("110100", "120100", "310100", "500100", "500200"):
            assert is_known_region(code) and region_full_name(code) == region_full_name(code[:2] + "0000")
        assert region_full_name("500157") == "重庆市两江新区"

    @pytest.mark.parametrize("code", [
        "130101",  # an ordinary city's old 市辖区 row: no division
        "429000",  # 省直辖县级行政区划: a placeholder, not a division
        "110103",  # 崇文区, merged into 东城区 in 2010
        "500105",  # 江北区, gone in the table of 2025-12-31
        "110199", "999999", "000000",
    ])
    def test_unknown(self, code: str) -> None:
        assert not is_known_region(code) and region_name(code) is None and region_full_name(code) is None
        assert region_full_name(None) is None

    def test_pattern_matches_exactly_the_table(self) -> None:
        pattern = re.compile(region_code_pattern())
        assert all(pattern.match(code) for code in known_codes())
        matching = [f"{n:06d}" for n in range(100_000, 1_000_000) if pattern.match(f"{n:06d}")]
        assert set(matching) == known_codes()

    def test_every_full_name_prints_in_the_certificate_font(self) -> None:
        from fontTools.ttLib import TTFont

        cmap = TTFont(str(FONT)).getBestCmap()
        missing = {ch for code in known_codes() for ch in region_full_name(code) or "" if ord(ch) not in cmap}
        assert not missing, "rebuild the subset: python -m services.contribution.payments.fonts.build_subset"


class TestValidation:
    def test_known_codes_pass_full_width_too(self) -> None:
        assert REGION.validate_python("110105") == "110105"
        assert REGION.validate_python("１１０１０５") == "110105"
        assert REGION.validate_python("110100") == "110100"

    @pytest.mark.parametrize("code", ["130101", "110199", "429000", "500105", "110103"])
    def test_unknown_codes(self, code: str) -> None:
        with pytest.raises(ValidationError) as caught:
            REGION.validate_python(code)
        assert [e["type"] for e in caught.value.errors()] == ["region_code_unknown"]

    @pytest.mark.parametrize("code", ["11010", "1101050", "11A105", "990000", "", "000000"])
    def test_malformed_codes_stay_invalid(self, code: str) -> None:
        with pytest.raises(ValidationError) as caught:
            REGION.validate_python(code)
        assert [e["type"] for e in caught.value.errors()] == ["region_code_invalid"]

    def test_id_number_region_digits_are_not_checked_against_the_table(self) -> None:
        # 110103 (崇文区) and 500105 (江北区) are gone, but numbers issued there stay valid.
        for region in ("110103", "500105", "130101"):
            idn = make_id_number(region, "19600101", "001")
            assert normalize_id_number(idn) == idn and id_number_info(idn).region_code == region
        with pytest.raises(ValueError):
            normalize_id_number(make_id_number("990101", "19600101", "001"))  # the province must exist


class TestCertificate:
    def test_name_beside_the_code_and_code_alone_without_glyphs(self) -> None:
        from services.contribution.payments.certificate import _font, region_text

        font = _font(FONT)
        assert region_text(font, "110105") == "北京市朝阳区（110105）"
        assert region_text(font, "420104") == "湖北省武汉市硚口区（420104）"  # 硚 is outside GB2312
        assert region_text(font, "500105") == "500105"  # no longer in the table
        assert region_text("Helvetica", "110105") == "110105"  # a font without the glyphs

    @pytest.mark.parametrize("code", ["110105", "622927", "500105"])
    def test_pdf_prints_the_name(self, code: str) -> None:
        import io
        from datetime import UTC, datetime

        from pypdf import PdfReader

        from services.contribution.payments.certificate import (
            CertificateData,
            CertificateLine,
            render_certificate,
        )

        at = datetime(2026, 3, 10, 2, tzinfo=UTC)
        data = CertificateData(
            code="A" * 24, verify_url="https://example.org/v/A", holder_name="张三", holder_id_masked=None,
            category="flexible", region_code=code, months=["2026-01"],
            lines=[CertificateLine("2026-01", "pension", "individual", 695700, 2000, 139140)], amount_fen=139140,
            channel="alipay", platform_trade_no=None, paid_at=at, issued_at=at,
        )
        text = PdfReader(io.BytesIO(render_certificate(data, font_file=FONT))).pages[0].extract_text()
        name = region_full_name(code)
        # 622927: the longest name (25 characters) is drawn smaller to stay clear of the QR code.
        expected = f"{name}（{code}）" if name else f"参保地区：{code}"
        assert expected in text.replace("\n", "").replace(" ", ""), text


# ---- every service refuses unknown codes, in the path, the query and the body ----------------

def _unknown(r: Any, *, en: bool = False) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "region_code_unknown", body
    [err] = [e for e in body["errors"] if e["code"] == "region_code_unknown"]
    assert err["message"] == ("no administrative division has this code (GB/T 2260 table of 2026-09-11)" if en
                              else "行政区划代码不存在")


ADMIN = staff("admin")
OPERATOR = staff("operator")
CC = make_credit_code("91110105MA0000001")


async def test_registration(make_service: Any) -> None:
    svc = await make_service("registration")
    h = svc.headers
    _unknown(await svc.client.get("/registration/v1/regional-rules/130101"))
    _unknown(await svc.client.get("/registration/v1/regional-rules/110199", headers={"Accept-Language": "en"}), en=True)
    _unknown(await svc.client.put("/registration/v1/regional-rules/429000/2026-04-01",
                                  json={"flexible_non_local_allowed": True, "reason": "政策调整"}, headers=h(ADMIN)))
    _unknown(await svc.client.post("/registration/v1/employers", headers=h(staff("operator"), **{"Idempotency-Key": "e1"}),
                                   json={"credit_code": CC, "name": "北京示例科技有限公司", "region_code": "110199"}))
    me = citizen(make_id_number())
    body = {"category": "flexible", "region_code": "110105", "household_region_code": "110103",
            "insurance_types": ["pension"], "start_month": "2026-01"}
    _unknown(await svc.client.post("/registration/v1/me/enrolments", json=body, headers=h(me, **{"Idempotency-Key": "m1"})))
    r = await svc.client.get("/registration/v1/regional-rules/110105")
    assert r.status_code == 200 and r.json()["region_name"] == region_full_name(r.json()["region_code"])


async def test_enrolment_answers_name_both_regions(make_service: Any) -> None:
    from services.common.clock import FrozenClock
    from tests.registration.conftest import NOW, Reg

    reg = Reg(await make_service("registration", clock=FrozenClock(NOW)))
    body = await reg.enrol_self(region_code="420104", household_region_code="420104")
    assert body["region_code"] == "420104" and body["region_name"] == "湖北省武汉市硚口区"
    assert body["household_region_name"] == "湖北省武汉市硚口区"
    resident = await reg.enrol_self(make_id_number("110105", "19800101", "003"), category="resident",
                                    household_region_code=None, insurance_types=["medical"], region_code="110105")
    assert resident["household_region_name"] is None and resident["region_name"] == "北京市朝阳区"


async def test_contribution(make_service: Any) -> None:
    svc = await make_service("contribution")
    h = svc.headers
    _unknown(await svc.client.get("/contribution/v1/policies/130101"))
    _unknown(await svc.client.get("/contribution/v1/policies/500105/versions"))
    _unknown(await svc.client.put("/contribution/v1/policies/110199/2026-01", json={}, headers=h(ADMIN)))
    body = {"category": "flexible", "region_code": "110103", "base_fen": 695700, "months": ["2026-01"]}
    me = citizen(make_id_number())
    _unknown(await svc.client.post("/contribution/v1/quotes", json=body, headers=h(me)))
    _unknown(await svc.client.post("/contribution/v1/me/declarations", json=body,
                                   headers=h(me, **{"Idempotency-Key": "d1"})))
    r = await svc.client.get("/contribution/v1/policies/110105?on=2026-01")
    assert r.status_code == 200, r.text
    assert r.json()["region_code"] == "110000" and r.json()["region_name"] == "北京市"


async def test_card(make_service: Any) -> None:
    svc = await make_service("card")
    h = svc.headers
    _unknown(await svc.client.get("/card/v1/rules?region_code=130101", headers=h(OPERATOR)))
    rule = {"region_code": "110199", "effective_from": "2099-03-12", "initial_pin_rule": "id_last6",
            "pin_max_tries": 5, "temporary_loss_days": 10, "reason": "调整"}
    _unknown(await svc.client.post("/card/v1/rules", json=rule, headers=h(ADMIN, **{"Idempotency-Key": "r1"})))
    r = await svc.client.get("/card/v1/rules?region_code=510100", headers=h(OPERATOR))
    assert r.status_code == 200 and [x["region_name"] for x in r.json()["items"]] == ["四川省成都市"]


async def test_review(make_service: Any) -> None:
    svc = await make_service("review")
    _unknown(await svc.client.get("/review/v1/rules/130101"))
    _unknown(await svc.client.put("/review/v1/rules/110199/2026-04-01", json={}, headers=svc.headers(ADMIN)))
    r = await svc.client.get("/review/v1/rules/110105")
    assert r.status_code == 200 and r.json()["region_name"] == region_full_name(r.json()["region_code"])
