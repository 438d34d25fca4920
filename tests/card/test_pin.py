"""Initial PIN, PIN change with every weak pattern, lockout and reset."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select, text

from services.common.models import AuditEntry
from tests.helpers import channel, make_id_number, staff

# make_id_number("110105", "19900101", "001") == "110105199001010010": initial PIN 010010.
INITIAL = "010010"


class TestInitialPin:
    async def test_default_rule_is_last_six_digits_and_flagged(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        assert card["initial_pin_unchanged"] is True
        assert idn[-6:] == INITIAL
        r = await flow.change_pin(idn, INITIAL, "285714")
        assert r.status_code == 200, r.text
        assert r.json()["initial_pin_unchanged"] is False
        assert (await flow.my_card(idn)).json()["initial_pin_unchanged"] is False

    async def test_x_is_read_as_zero(self, flow: Any) -> None:
        idn = next(
            i for i in (make_id_number("110105", "19900101", f"{n:03d}") for n in range(1, 200)) if i.endswith("X")
        )
        await flow.active_card(idn)
        r = await flow.change_pin(idn, idn[-6:-1] + "0", "285714")
        assert r.status_code == 200, r.text

    async def test_fixed_rule_region(self, flow: Any) -> None:
        # Shanghai (310000) uses 123456: itself weak, so the holder must change it.
        idn = make_id_number("310101", "19850615", "002")
        card = await flow.active_card(idn, region="310101")
        assert card["initial_pin_unchanged"] is True
        assert (await flow.change_pin(idn, idn[-6:], "285714")).json()["code"] == "pin_incorrect"
        r = await flow.change_pin(idn, "123456", "285714")
        assert r.status_code == 200 and r.json()["initial_pin_unchanged"] is False


class TestChangePin:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        r = await flow.client.put("/card/v1/me/card/pin", json={"old_pin": INITIAL, "new_pin": "285714"})
        assert r.status_code == 401

    async def test_channel_is_refused(self, flow: Any) -> None:
        r = await flow.client.put(
            "/card/v1/me/card/pin", json={"old_pin": INITIAL, "new_pin": "285714"}, headers=flow.h(channel("bank"))
        )
        assert r.status_code == 403

    async def test_level_and_freshness(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        r = await flow.change_pin(idn, INITIAL, "285714", level=2)
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"
        r = await flow.change_pin(idn, INITIAL, "285714", auth_time=flow.now_epoch() - 301)
        assert r.status_code == 403 and r.json()["code"] == "fresh_auth_required"

    @pytest.mark.parametrize("pin", ["12345", "1234567", "12a456", "", "２８５７١٤", "２８５٧١٤", "285 714"])
    async def test_pin_format(self, flow: Any, idn: str, pin: str) -> None:
        await flow.active_card(idn)
        r = await flow.change_pin(idn, INITIAL, pin)
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "new_pin"
        assert (await flow.card_row((await flow.my_card(idn)).json()["id"])).pin_failed_tries == 0

    async def test_no_card_is_404(self, flow: Any, idn: str) -> None:
        r = await flow.change_pin(idn, INITIAL, "285714")
        assert r.status_code == 404 and r.json()["code"] == "card_not_found"

    async def test_issued_card_must_be_activated_first(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        await flow.issue((await flow.apply(idn))["id"])
        r = await flow.change_pin(idn, INITIAL, "285714")
        assert r.status_code == 409 and r.json()["current_state"] == "issued"

    @pytest.mark.parametrize(
        ("new_pin", "reason"),
        [
            ("111111", "repeated"),
            ("000000", "repeated"),
            ("123456", "consecutive"),
            ("456789", "consecutive"),
            ("876543", "consecutive"),
            ("654321", "consecutive"),
            ("199001", "part_of_id_number"),  # 110105[199001]010010
            ("051990", "part_of_id_number"),
            (INITIAL, "same_as_old"),
        ],
    )
    async def test_weak_pins_are_refused(self, flow: Any, idn: str, new_pin: str, reason: str) -> None:
        await flow.active_card(idn)
        r = await flow.change_pin(idn, INITIAL, new_pin)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "pin_too_weak" and r.json()["reason"] == reason
        assert r.json()["errors"][0]["field"] == "new_pin"
        card = (await flow.my_card(idn)).json()
        assert card["initial_pin_unchanged"] is True

    async def test_lockout_after_three_then_reset_at_window(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        for left in (2, 1, 0):
            r = await flow.change_pin(idn, "999990", "285714")
            assert r.status_code == 422
            assert r.json()["code"] == "pin_incorrect" and r.json()["tries_left"] == left
        # Locked: even the right PIN is refused now.
        for pin in ("999990", INITIAL):
            r = await flow.change_pin(idn, pin, "285714")
            assert r.status_code == 423 and r.json()["code"] == "pin_locked"
        row = await flow.card_row(card["id"])
        assert row.pin_locked and row.pin_failed_tries == 3
        assert (await flow.my_card(idn)).json()["pin_locked"] is True

        r = await flow.client.post(f"/card/v1/cards/{card['id']}/pin-reset", json={"reason": "持证件到窗口"},
                                   headers=flow.h(channel("window", "W9")))
        assert r.status_code == 200, r.text
        assert r.json()["pin_locked"] is False and r.json()["initial_pin_unchanged"] is True
        assert (await flow.change_pin(idn, INITIAL, "285714")).status_code == 200
        async with flow.svc.db.sessionmaker() as s:
            actions = (await s.execute(select(AuditEntry.action).order_by(AuditEntry.id))).scalars().all()
        assert "card.pin_locked" in actions and "card.pin_reset" in actions

    async def test_a_right_pin_clears_the_count(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        await flow.change_pin(idn, "999990", "285714")
        await flow.change_pin(idn, "999990", "285714")
        assert (await flow.change_pin(idn, INITIAL, "285714")).status_code == 200
        assert (await flow.card_row(card["id"])).pin_failed_tries == 0

    async def test_pin_hash_column_never_holds_the_pin(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        assert (await flow.change_pin(idn, INITIAL, "285714")).status_code == 200
        async with flow.svc.db.sessionmaker() as s:
            stored = (await s.execute(text("SELECT pin_hash FROM cards"))).scalar_one()
            dump = " ".join(str(v) for row in (await s.execute(text("SELECT * FROM cards"))).all() for v in row)
        assert stored.startswith("$argon2id$")
        assert "285714" not in dump and INITIAL not in stored and idn not in dump
        # Peppered: a dump alone does not allow trying the million six-digit PINs against it.
        with pytest.raises(VerificationError):
            PasswordHasher().verify(stored, "285714")

    async def test_a_pin_hash_copied_onto_another_card_does_not_verify(self, flow: Any, idn: str) -> None:
        mine = await flow.active_card(idn)
        other_idn = make_id_number("110105", "19900101", "003")
        await flow.active_card(other_idn, card_no="J00000099")
        async with flow.svc.db.sessionmaker() as s, s.begin():
            stolen = (await s.execute(text("SELECT pin_hash FROM cards WHERE id = :i"), {"i": mine["id"]})).scalar_one()
            await s.execute(text("UPDATE cards SET pin_hash = :h WHERE id <> :i"), {"h": stolen, "i": mine["id"]})
        r = await flow.change_pin(other_idn, INITIAL, "285714")
        assert r.status_code == 422 and r.json()["code"] == "pin_incorrect"


class TestPinReset:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/pin-reset")).status_code == 401

    async def test_bank_and_staff_are_refused(self, flow: Any) -> None:
        for prn in (channel("bank"), staff("admin")):
            r = await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/pin-reset", headers=flow.h(prn))
            assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"

    async def test_citizen_needs_fresh_face(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        url = f"/card/v1/cards/{card['id']}/pin-reset"
        r = await flow.client.post(url, headers=flow.h(flow.citizen(idn, auth_method="sms")))
        assert r.status_code == 403 and r.json()["code"] == "face_auth_required"
        r = await flow.client.post(url, headers=flow.h(flow.citizen(idn, auth_time=flow.now_epoch() - 400)))
        assert r.status_code == 403 and r.json()["code"] == "face_auth_required"

    async def test_citizen_resets_own_locked_pin_to_a_new_one(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        for _ in range(3):
            await flow.change_pin(idn, "999990", "285714")
        url = f"/card/v1/cards/{card['id']}/pin-reset"
        weak = await flow.client.post(url, json={"new_pin": "222222"}, headers=flow.h(flow.citizen(idn)))
        assert weak.status_code == 422 and weak.json()["code"] == "pin_too_weak"
        r = await flow.client.post(url, json={"new_pin": "285714"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 200 and r.json()["pin_locked"] is False
        assert r.json()["initial_pin_unchanged"] is False
        assert (await flow.change_pin(idn, "285714", "302917")).status_code == 200

    async def test_another_persons_card_is_404(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        stranger = make_id_number("110105", "19900101", "005")
        r = await flow.client.post(f"/card/v1/cards/{card['id']}/pin-reset", headers=flow.h(flow.citizen(stranger)))
        assert r.status_code == 404
