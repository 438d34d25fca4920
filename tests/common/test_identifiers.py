"""Identifiers are what they look like: ASCII only once accepted, provinces that exist,
credit codes laid out as GB 32100 says, months in a sane range, names that are names."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.common.identifiers import (
    AsciiInt,
    CreditCode,
    IdNumber,
    Month,
    PersonName,
    RegionCode,
    normalize_credit_code,
    normalize_id_number,
    normalize_month,
    normalize_person_name,
    normalize_region_code,
    to_ascii,
)
from tests.helpers import make_credit_code, make_id_number

VALID_ID = "11010519491231002X"
VALID_CC = "91350100M000100Y43"

# Every decimal digit Unicode has, grouped by its zero: ASCII, Arabic-Indic,
# Devanagari, full-width, mathematical bold, ...
ZEROS = sorted({ord(c) - int(unicodedata.digit(c)) for c in map(chr, range(sys.maxunicode + 1))
                if unicodedata.category(c) == "Nd"})
FULL_WIDTH_ZERO = 0xFF10


def in_digits(text: str, zero: int) -> str:
    """`text` with its ASCII digits written from the digit class starting at `zero`."""
    return "".join(chr(zero + int(c)) if c in "0123456789" else c for c in text)


class TestDigits:
    def test_full_width_forms_become_ascii(self) -> None:
        assert normalize_id_number("１１０１０５19491231002X") == VALID_ID
        assert normalize_id_number("１１０１０５１９４９１２３１００２ｘ") == VALID_ID
        assert normalize_credit_code("９１３５０１００ｍ０００１００ｙ４３") == VALID_CC
        assert normalize_region_code("1１0105") == "110105"
        assert normalize_month("２０２５－08") == "2025-08"

    @pytest.mark.parametrize("zero", [0x0660, 0x06F0, 0x0966, 0x1D7CE, 0x0E50])  # Arabic-Indic, Persian, Devanagari, math bold, Thai
    def test_other_digits_are_refused_in_every_field(self, zero: int) -> None:
        for check, value in (
            (normalize_id_number, VALID_ID), (normalize_credit_code, VALID_CC),
            (normalize_region_code, "110105"), (normalize_month, "2025-08"),
        ):
            with pytest.raises(ValueError):
                check(in_digits(value, zero))
            with pytest.raises(ValueError):  # even a single one
                check(value[:-2] + in_digits(value[-2], zero) + value[-1])

    @pytest.mark.parametrize("kind,code", [(IdNumber, "id_number_invalid"), (CreditCode, "credit_code_invalid"),
                                           (RegionCode, "region_code_invalid"), (Month, "month_invalid")])
    def test_each_field_refuses_with_its_own_code(self, kind: object, code: str) -> None:
        with pytest.raises(ValidationError) as err:
            TypeAdapter(kind).validate_python("٠٠٢")
        assert err.value.errors()[0]["type"] == code

    @settings(max_examples=300, deadline=None)
    @given(zero=st.sampled_from(ZEROS), region=st.sampled_from(["110105", "440524", "340524", "650102"]),
           seq=st.integers(0, 999), x=st.booleans())
    def test_nothing_but_ascii_is_ever_accepted(self, zero: int, region: str, seq: int, x: bool) -> None:
        ascii_id = make_id_number(region, "19800101", f"{seq:03d}")
        candidate = in_digits(ascii_id, zero)
        if x and ascii_id.endswith("X"):
            candidate = candidate[:-1] + "x"
        try:
            out = normalize_id_number(candidate)
        except ValueError:
            assert zero not in (0x30, FULL_WIDTH_ZERO)
            return
        assert out.isascii() and out == ascii_id
        assert zero in (0x30, FULL_WIDTH_ZERO)

    @settings(max_examples=200, deadline=None)
    @given(zero=st.sampled_from(ZEROS), year=st.integers(1951, 2100), month=st.integers(1, 12))
    def test_months_and_numbers_stay_ascii(self, zero: int, year: int, month: int) -> None:
        text = in_digits(f"{year:04d}-{month:02d}", zero)
        adapter = TypeAdapter(AsciiInt)
        try:
            out = normalize_month(text)
        except ValueError:
            assert zero not in (0x30, FULL_WIDTH_ZERO)
        else:
            assert out == f"{year:04d}-{month:02d}"
        try:
            n = adapter.validate_python(in_digits(str(year), zero))
        except ValidationError:
            assert zero not in (0x30, FULL_WIDTH_ZERO)
        else:
            assert n == year

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=24))
    def test_any_accepted_identifier_is_ascii(self, text: str) -> None:
        for check in (normalize_id_number, normalize_credit_code, normalize_region_code, normalize_month):
            try:
                out = check(text)
            except ValueError:
                continue
            assert out.isascii()

    def test_to_ascii_leaves_other_characters_for_the_check(self) -> None:
        assert to_ascii("٠１") == "٠1"

    @pytest.mark.parametrize("value", ["2026.0", "+2026", "2_026", "2026 ", " 2026", "1e3", "٢٠٢٦", "", "-1", True, 2026.0])
    def test_query_numbers_are_plain_ascii_digits(self, value: object) -> None:
        with pytest.raises(ValidationError):
            TypeAdapter(AsciiInt).validate_python(value)
        assert TypeAdapter(AsciiInt).validate_python("２０２６") == 2026
        assert TypeAdapter(AsciiInt).validate_python(2026) == 2026


class TestProvinces:
    @pytest.mark.parametrize("prefix", ["00", "10", "20", "60", "16", "24", "38", "47", "55", "66", "72", "80", "83", "91", "99"])
    def test_id_numbers_from_no_province_are_refused(self, prefix: str) -> None:
        idn = make_id_number(prefix + "0000", "19800101", "001")  # correct check digit
        with pytest.raises(ValueError, match="province"):
            normalize_id_number(idn)

    @pytest.mark.parametrize("prefix", ["11", "15", "21", "23", "31", "37", "41", "46", "50", "54", "61", "65", "71", "81", "82"])
    def test_every_province_is_accepted(self, prefix: str) -> None:
        idn = make_id_number(prefix + "0101", "19800101", "001")
        assert normalize_id_number(idn) == idn

    def test_abolished_county_codes_stay_valid(self) -> None:
        # 110103 (Chongwen district, merged into Dongcheng in 2010) is still in old numbers.
        idn = make_id_number("110103", "19600101", "001")
        assert normalize_id_number(idn) == idn

    def test_region_codes_need_a_province(self) -> None:
        for bad in ("000000", "100000", "990000", "600101"):
            with pytest.raises(ValueError):
                normalize_region_code(bad)
        assert normalize_region_code("110105") == "110105"


class TestCreditCodeLayout:
    def test_published_example(self) -> None:
        assert normalize_credit_code(VALID_CC) == VALID_CC

    def test_division_code_must_be_digits(self) -> None:
        with pytest.raises(ValueError, match="division"):
            normalize_credit_code("91AB0100M000100Y4T")
        with pytest.raises(ValueError, match="division"):
            normalize_credit_code(make_credit_code("91AB0100M00010000"))  # correct check character

    @pytest.mark.parametrize("body", ["B1110105MA0000001", "0111010500000001X", "94110105MA0000001", "Y2110105MA0000001",
                                      "15110105MA0000001", "C1110105MA0000001"])
    def test_authority_and_type_must_fit(self, body: str) -> None:
        with pytest.raises(ValueError):
            normalize_credit_code(make_credit_code(body))

    @pytest.mark.parametrize("body", ["11100000000013127", "12110000400000000", "51110000500000000", "52110105MJ0000000",
                                      "91110105MA0000001", "92110105MA0000001", "93110105MA0000001", "Y1110105MA0000001",
                                      "N2110105MA0000001", "31110000400000000"])
    def test_each_authority_and_its_types(self, body: str) -> None:
        code = make_credit_code(body)
        assert normalize_credit_code(code) == code

    def test_division_outside_every_province_is_refused(self) -> None:
        with pytest.raises(ValueError, match="division"):
            normalize_credit_code(make_credit_code("91990105MA0000001"))


class TestMonths:
    @pytest.mark.parametrize("bad", ["0000-01", "1950-12", "2101-01", "2025-8", "2025-13", "2025/08", " ", ""])
    def test_out_of_range_and_malformed(self, bad: str) -> None:
        with pytest.raises(ValueError):
            normalize_month(bad)

    def test_range_ends(self) -> None:
        assert normalize_month("1951-01") == "1951-01" and normalize_month("2100-12") == "2100-12"


class TestNames:
    @pytest.mark.parametrize("name", ["张三", "阿依古丽·买买提", "欧阳娜娜", "John Smith", "José Núñez", "བཀྲ་ཤིས", "金　正"])
    def test_real_names(self, name: str) -> None:
        assert normalize_person_name(name)

    @pytest.mark.parametrize("name", [
        "张\x00三", "张\u202e三", "\u200d", "张\u200d三", "😀", "张三😀", "e" + "\u0301" * 49, "\u0301张", "张三1", "张三!",
        "·张三", "张三·", "张  三", "张··三", " ", "", "张" * 51, "\t张三", "张\n三", "\ufeff张三",
    ])
    def test_names_that_are_not_names(self, name: str) -> None:
        with pytest.raises(ValueError):
            normalize_person_name(name)

    def test_field_code_is_name_invalid(self) -> None:
        with pytest.raises(ValidationError) as err:
            TypeAdapter(PersonName).validate_python("张\u202e三")
        assert err.value.errors()[0]["type"] == "name_invalid"

    def test_names_are_stored_in_nfc(self) -> None:
        assert normalize_person_name("Jose\u0301") == "José"


def test_a_service_with_a_post_route_that_forgets_idempotency_does_not_start() -> None:
    from fastapi import APIRouter

    from services.common.routing import unguarded_post_routes

    plain = APIRouter(prefix="/x")

    @plain.post("/things")
    async def make_thing() -> dict[str, str]:
        return {}

    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(plain)
    assert unguarded_post_routes(app.routes) == ["/x/things"]
