"""Annual declaration throughput: one PUT of N lines (default 5,000) against a roster of N employees,
in-process on a fresh migrated SQLite database (or REVIEW_BENCH_DATABASE_URL), best of a few runs.

    .venv/bin/python -m bench.review_declaration [--lines 5000] [--runs 3]

Every line is validated, hashed, compared with the roster and the band and stored; the answer
carries the differences. Prints the wall time of the request as the client sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from services.common.clock import FrozenClock
from services.common.migrate import upgrade_async
from services.common.pii import cipher, id_hash, mask_id_number
from services.common.settings import CommonSettings
from services.review.app import create_app
from services.review.models import Band, Employer, RosterEntry
from services.review.settings import Settings


def _ids(n: int) -> list[str]:
    from services.common.identifiers import id_number_check_char

    born = date(1960, 1, 1)
    out = []
    for i in range(n):
        first = "110105" + (born + timedelta(days=i // 1000)).strftime("%Y%m%d") + f"{i % 1000:03d}"
        out.append(first + id_number_check_char(first))
    return out


async def main(lines: int, runs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="review-bench-"))
    os.environ.setdefault("SOCIALSEC_VAR_DIR", str(tmp))
    from devtools.keys import ensure_dev_keys

    ensure_dev_keys(Path(os.environ["SOCIALSEC_VAR_DIR"]))
    url = os.environ.get("REVIEW_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/review.db")
    await upgrade_async("review", url)
    settings = Settings(database_url=url, migrate_on_start=False, consumers_enabled=False)
    app = create_app(settings=settings, common=CommonSettings(), clock=FrozenClock(datetime(2026, 3, 10, 2, tzinfo=UTC)))
    cc = "91110105MA00000015"
    ids = _ids(lines)
    async with app.state.db.sessionmaker() as s:
        s.add(Employer(credit_code=cc, name="北京示例科技有限公司", region_code="110105", registered_on=date(2020, 1, 1)))
        s.add(Band(region_code="110000", effective_from="2025-07", effective_to=None, avg_wage_fen=1_159_500,
                   base_lower_fen=695_700, base_upper_fen=3_528_300))
        c = cipher()
        await s.execute(insert(RosterEntry), [
            {"enrolment_id": f"E{i}", "credit_code": cc, "person_id": f"P{i}", "id_hash": id_hash(x),
             "id_masked": mask_id_number(x), "id_number_enc": c.encrypt(x), "name": f"职工{i}", "hire_date": date(2024, 1, 1),
             "start_month": "2024-01", "last_month": None, "monthly_wage_fen": 800_000}
            for i, x in enumerate(ids)
        ])
        await s.commit()
    from services.common.principal import encode_principal

    key = (Path(os.environ["SOCIALSEC_VAR_DIR"]) / "keys" / "gateway-signing.pem").read_text()
    body = {"lines": [
        {"id_number": x, "name": f"职工{i}" if i % 50 else f"职工{i}改", "avg_monthly_wage_fen": 600_000 + 70 * i}
        for i, x in enumerate(ids) if i % 100
    ] + [{"id_number": ids[0][:-1] + "0", "name": "错号", "avg_monthly_wage_fen": 1}]}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://review", timeout=120) as client:
        times = []
        for _ in range(runs):
            prn = {"kind": "employer", "sub": "u", "credit_code": cc, "unit_name": "x"}
            headers = {"X-Principal": encode_principal(prn, audience="review", private_key_pem=key, ttl=60)}
            t0 = time.perf_counter()
            r = await client.put(f"/review/v1/employers/{cc}/annual-declarations/2025", json=body, headers=headers)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        d = r.json()["differences"]
        print(f"{len(body['lines'])} lines against a roster of {lines} ({url.split(':')[0]}): "
              f"best {min(times) * 1000:.0f} ms, runs {[round(t * 1000) for t in times]} ms; "
              f"not declared {len(d['not_declared'])}, name differs {len(d['name_differs'])}, "
              f"outside band {len(d['outside_band'])}, errors {len(r.json()['errors'])}")
    await app.state.db.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    asyncio.run(main(a.lines, a.runs))
