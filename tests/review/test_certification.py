"""Pensioner certification: states from dates, certify (face, staff), suspend, resume, sweep."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from services.review.events import PENSION_RESUMED, PENSION_SUSPENDED
from services.review.models import Certification, Pensioner, StateTransition, Suspension
from tests.helpers import citizen, employer, staff
from tests.review.conftest import START, audits, idn, outbox


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def fresh_citizen(svc, id_number, **kw):
    kw.setdefault("auth_time", svc.clock.now().timestamp() - 60)
    return svc.headers(citizen(id_number, "王大爷", **kw))


class TestMyStatus:
    async def test_anonymous_is_401(self, svc):
        r = await svc.client.get("/review/v1/me/certification")
        assert r.status_code == 401

    async def test_employer_is_403(self, svc):
        r = await svc.client.get("/review/v1/me/certification", headers=svc.headers(employer()))
        assert r.status_code == 403
        assert r.json()["code"] == "principal_kind_not_allowed"

    async def test_not_a_pensioner_is_404(self, svc):
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1), level=1))
        assert r.status_code == 404
        assert r.json()["code"] == "pensioner_not_found"

    async def test_valid(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 6, 1))
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1), level=1))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "valid"
        assert body["last_certified_on"] is None
        assert body["due_by"] == "2026-06-01"
        assert body["id_number_masked"] == idn(1)[:6] + "********" + idn(1)[-4:]

    async def test_due_thirty_days_before_the_deadline(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 4, 9))  # due by 2026-04-09: 30 days from today
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert (r.json()["state"], r.json()["due_by"]) == ("due", "2026-04-09")
        svc.clock.set(at(2026, 3, 9))  # 31 days before
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["state"] == "valid"

    async def test_overdue_then_suspended_after_the_grace(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 3, 1))  # due by 2026-03-01, Beijing grace 60 days
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["state"] == "overdue"
        assert r.json()["suspend_after"] == "2026-04-30"
        svc.clock.set(at(2026, 4, 30))
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["state"] == "overdue"
        svc.clock.set(at(2026, 5, 1))
        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["state"] == "suspended"
        assert await outbox(svc, PENSION_SUSPENDED) == []  # reading never writes: the sweep records it

    async def test_resident_pensioner_every_six_months_where_the_region_says_so(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 9, 15), region="310104", scheme="resident")
        await feed.award(idn(2), from_date=date(2025, 9, 15), region="310104", scheme="employee")
        await feed.award(idn(3), from_date=date(2025, 9, 15), region="110105", scheme="resident")
        due = {}
        for n in (1, 2, 3):
            r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(n)))
            due[n] = (r.json()["state"], r.json()["due_by"])
        assert due == {1: ("due", "2026-03-15"), 2: ("valid", "2026-09-15"), 3: ("valid", "2026-09-15")}


class TestCertifyByFace:
    async def test_anonymous_is_401(self, svc):
        assert (await svc.client.post("/review/v1/me/certification")).status_code == 401

    async def test_level_two_is_refused(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1), level=2))
        assert r.status_code == 403
        assert r.json()["code"] == "realname_level_too_low"

    async def test_face_auth_too_old(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 3, 1))
        old = START.timestamp() - 301
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1), auth_time=old))
        assert r.status_code == 403
        # A face route asks for a new face authentication (the kernel's step-up code for face routes).
        assert r.json()["code"] == "face_auth_required"

    async def test_wrong_auth_method(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1), auth_method="sms"))
        assert r.status_code == 403
        assert r.json()["code"] == "face_auth_required"

    async def test_not_a_pensioner(self, svc):
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 404
        assert r.json()["code"] == "pensioner_not_found"

    async def test_overdue_pensioner_certifies_and_is_valid_for_twelve_months(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["method"] == "face"
        assert body["certified_on"] == "2026-03-10"
        assert body["resumed"] is None
        assert body["status"]["state"] == "valid"
        assert body["status"]["due_by"] == "2027-03-10"
        async with svc.db.sessionmaker() as s:
            p = await s.get(Pensioner, pid)
            assert p.last_certified_on == date(2026, 3, 10)
            assert (await s.execute(select(Certification))).scalar_one().method == "face"
        assert await outbox(svc) == []

    async def test_idempotent_replay(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 3, 1))
        h = fresh_citizen(svc, idn(1), **{})
        h["Idempotency-Key"] = "cert-1"
        first = await svc.client.post("/review/v1/me/certification", headers=h)
        again = await svc.client.post("/review/v1/me/certification", headers=h)
        assert again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        async with svc.db.sessionmaker() as s:
            assert len((await s.execute(select(Certification))).scalars().all()) == 1


class TestStaffCertification:
    URL = "/review/v1/persons/{}/certifications"

    async def test_anonymous_and_citizen(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        assert (await svc.client.post(self.URL.format(pid), json={})).status_code == 401
        r = await svc.client.post(self.URL.format(pid), json={"method": "home_visit", "evidence": "x"},
                                  headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 403

    async def test_reviewer_is_not_an_operator(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post(self.URL.format(pid), json={"method": "home_visit", "evidence": "入户见到本人"},
                                  headers=svc.headers(staff("reviewer")))
        assert r.status_code == 403
        assert r.json()["code"] == "staff_role_required"

    async def test_evidence_missing(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        for body in ({"method": "community_visit"}, {"method": "data_match", "evidence": "   "}):
            r = await svc.client.post(self.URL.format(pid), json=body, headers=svc.headers(staff("operator")))
            assert r.status_code == 422
            assert r.json()["code"] == "evidence_required"
        assert await audits(svc) == []

    async def test_bad_method_and_oversized_evidence(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post(self.URL.format(pid), json={"method": "phone", "evidence": "x"},
                                  headers=svc.headers(staff("operator")))
        assert r.status_code == 422
        r = await svc.client.post(self.URL.format(pid), json={"method": "home_visit", "evidence": "x" * 5000},
                                  headers=svc.headers(staff("operator")))
        assert r.status_code == 422
        r = await svc.client.post(self.URL.format(pid), content=b"{not json",
                                  headers=svc.headers(staff("operator"), **{"Content-Type": "application/json"}))
        assert r.status_code == 400

    async def test_future_date_refused(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post(
            self.URL.format(pid), json={"method": "home_visit", "evidence": "见到本人", "certified_on": "2026-03-11"},
            headers=svc.headers(staff("operator")),
        )
        assert r.status_code == 422
        assert r.json()["code"] == "certified_on_invalid"

    async def test_unknown_person_is_404(self, svc):
        r = await svc.client.post(self.URL.format("00000000-0000-4000-8000-000000000000"), json={"method": "home_visit", "evidence": "x"},
                                  headers=svc.headers(staff("operator")))
        assert r.status_code == 404

    async def test_data_match_with_evidence_is_recorded_and_audited(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 3, 1))
        r = await svc.client.post(
            self.URL.format(pid),
            json={"method": "data_match", "evidence": "2026-03-02 医保定点医院就诊记录比对一致", "certified_on": "2026-03-02"},
            headers=svc.headers(staff("operator", staff_id="S7")),
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"]["due_by"] == "2027-03-02"
        async with svc.db.sessionmaker() as s:
            c = (await s.execute(select(Certification))).scalar_one()
            assert (c.method, c.actor, c.certified_on) == ("data_match", "staff:S7", date(2026, 3, 2))
            assert "医保" in c.evidence
        [a] = await audits(svc, "pension.certify")
        assert (a.actor, a.target_id, a.reason) == ("staff:S7", pid, "data_match")


class TestSuspensionAndResume:
    URL = "/review/v1/persons/{}/suspensions"

    async def test_anonymous_citizen_and_bad_reason(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 6, 1))
        assert (await svc.client.post(self.URL.format(pid), json={"reason": "imprisonment"})).status_code == 401
        r = await svc.client.post(self.URL.format(pid), json={"reason": "imprisonment"}, headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 403
        r = await svc.client.post(self.URL.format(pid), json={"reason": "because"}, headers=svc.headers(staff()))
        assert r.status_code == 422
        r = await svc.client.post(self.URL.format(pid), json={"reason": "other", "from_month": "2026-13"},
                                  headers=svc.headers(staff()))
        assert r.status_code == 422

    async def test_imprisonment_suspends_and_resumes_without_back_pay(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 6, 1))
        r = await svc.client.post(self.URL.format(pid), json={"reason": "imprisonment", "detail": "法院判决书"},
                                  headers=svc.headers(staff("operator", staff_id="S2")))
        assert r.status_code == 201, r.text
        assert (r.json()["reason"], r.json()["from_month"]) == ("imprisonment", "2026-03")
        [ev] = await outbox(svc, PENSION_SUSPENDED)
        assert ev.data["reason"] == "imprisonment" and ev.data["person_id"] == pid
        [a] = await audits(svc, "pension.suspend")
        assert (a.actor, a.reason) == ("staff:S2", "imprisonment")

        r = await svc.client.get("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["state"] == "suspended"
        again = await svc.client.post(self.URL.format(pid), json={"reason": "other"}, headers=svc.headers(staff()))
        assert again.status_code == 409
        assert again.json()["code"] == "pension_already_suspended"

        svc.clock.set(at(2026, 7, 20))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 201, r.text
        assert r.json()["resumed"]["resumed_from_month"] == "2026-08"
        assert r.json()["resumed"]["back_pay_months"] == []
        assert r.json()["status"]["state"] == "valid"
        [ev] = await outbox(svc, PENSION_RESUMED)
        assert ev.data["back_pay_months"] == [] and ev.data["from_month"] == "2026-08"

    async def test_missed_certification_resumes_with_back_pay(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2024, 12, 1))  # due 2025-12-01, suspended after 2026-01-30
        sweep = await svc.client.post("/review/v1/sweeps", headers=svc.headers(staff()))
        assert sweep.json()["suspended"] == 1
        [ev] = await outbox(svc, PENSION_SUSPENDED)
        assert ev.data == {"person_id": pid, "id_hash": ev.data["id_hash"], "from_month": "2026-02",
                           "reason": "overdue_certification"}
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.status_code == 201, r.text
        assert r.json()["resumed"]["back_pay_months"] == ["2026-02", "2026-03"]
        assert r.json()["resumed"]["resumed_from_month"] == "2026-04"
        [ev] = await outbox(svc, PENSION_RESUMED)
        assert ev.data["back_pay_months"] == ["2026-02", "2026-03"]
        assert ev.data["certified_on"] == "2026-03-10"
        async with svc.db.sessionmaker() as s:
            sus = (await s.execute(select(Suspension))).scalar_one()
            assert sus.open_key is None and sus.resumed_from_month == "2026-04"

    async def test_certifying_past_the_grace_before_any_sweep_suspends_then_resumes(self, svc, feed):
        await feed.award(idn(1), from_date=date(2024, 12, 1))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["resumed"]["back_pay_months"] == ["2026-02", "2026-03"]
        assert [e.type for e in await outbox(svc)] == [PENSION_SUSPENDED, PENSION_RESUMED]


class TestSweep:
    async def test_anonymous_and_citizen(self, svc):
        assert (await svc.client.post("/review/v1/sweeps")).status_code == 401
        r = await svc.client.post("/review/v1/sweeps", headers=svc.headers(citizen()))
        assert r.status_code == 403

    async def test_every_transition_is_recorded_once(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 6, 1))  # due by 2026-06-01, grace to 2026-07-31
        h = svc.headers(staff("operator"))

        async def run():
            r = await svc.client.post("/review/v1/sweeps", headers=h)
            assert r.status_code == 200, r.text
            return r.json()

        assert (await run())["transitions"] == 0
        svc.clock.set(at(2026, 5, 2))
        assert (await run())["transitions"] == 1
        assert (await run())["transitions"] == 0
        svc.clock.set(at(2026, 6, 2))
        assert (await run())["transitions"] == 1
        svc.clock.set(at(2026, 8, 1))
        out = await run()
        assert (out["transitions"], out["suspended"]) == (1, 1)
        out = await run()
        assert (out["transitions"], out["suspended"]) == (0, 0)
        [ev] = await outbox(svc, PENSION_SUSPENDED)
        assert ev.data["from_month"] == "2026-08"
        async with svc.db.sessionmaker() as s:
            moves = (await s.execute(select(StateTransition).order_by(StateTransition.id))).scalars().all()
        assert [(m.from_state, m.to_state) for m in moves] == [
            ("valid", "due"), ("due", "overdue"), ("overdue", "suspended"),
        ]
        assert all(m.person_id == pid for m in moves)
        svc.clock.set(at(2026, 9, 3))
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["resumed"]["back_pay_months"] == ["2026-08", "2026-09"]
        assert (await run())["transitions"] == 0

    async def test_many_pensioners_in_batches(self, svc, feed, monkeypatch):
        from services.review.certification import service as certification

        monkeypatch.setattr(certification, "SWEEP_BATCH", 5)
        for n in range(1, 13):
            await feed.award(idn(n), from_date=date(2024, 12, 1) if n % 2 else date(2025, 6, 1))
        r = await svc.client.post("/review/v1/sweeps", headers=svc.headers(staff()))
        assert (r.json()["examined"], r.json()["suspended"]) == (12, 6)
        assert len(await outbox(svc, PENSION_SUSPENDED)) == 6


class TestScheduledSweep:
    async def test_the_background_job_sweeps_with_the_app_clock(self, svc, feed):
        import asyncio

        from services.review.app import sweep_job

        await feed.award(idn(1), from_date=date(2024, 12, 1))
        stop = asyncio.Event()
        task = asyncio.create_task(sweep_job(svc.app, stop))
        for _ in range(200):
            if await outbox(svc, PENSION_SUSPENDED):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        [ev] = await outbox(svc, PENSION_SUSPENDED)
        assert ev.data["reason"] == "overdue_certification"


class TestSuspensionMonth:
    async def test_first_suspended_month_must_fall_in_the_pension(self, svc, feed):
        pid = await feed.award(idn(1), from_date=date(2025, 6, 1))
        for month in ("2025-05", "2026-05"):
            r = await svc.client.post(f"/review/v1/persons/{pid}/suspensions", json={"reason": "other", "from_month": month},
                                      headers=svc.headers(staff()))
            assert (r.status_code, r.json()["code"]) == (422, "suspension_month_invalid"), month
        r = await svc.client.post(f"/review/v1/persons/{pid}/suspensions",
                                  json={"reason": "whereabouts_unknown", "from_month": "2026-01"}, headers=svc.headers(staff()))
        assert r.status_code == 201
        r = await svc.client.post("/review/v1/me/certification", headers=fresh_citizen(svc, idn(1)))
        assert r.json()["resumed"]["back_pay_months"] == ["2026-01", "2026-02", "2026-03"]
