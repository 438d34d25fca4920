"""Employee import throughput: one POST .../employee-imports of N rows (default 100,000) as an .xlsx
(or --format csv), in-process on a fresh migrated SQLite database (or REGISTRATION_BENCH_DATABASE_URL).

    .venv/bin/python -m bench.imports [--rows 100000] [--format xlsx]

Every row is read, checked and enrolled as the JSON route enrols (person, enrolment, event, history).
Prints the wall time of the request as the client sees it, the time to read the file alone, and the
process's peak memory (ru_maxrss) and the Python allocations' peak (tracemalloc is off: it would slow
the run; the figure is the resident set).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from services.common.clock import FrozenClock
from services.common.migrate import upgrade_async
from services.common.settings import CommonSettings
from services.common.spreadsheets import read_table
from services.registration.app import create_app
from services.registration.settings import Settings

CC = "91110105MA00000012"


def _ids(n: int) -> list[str]:
    from services.common.identifiers import id_number_check_char

    born = date(1960, 1, 1)
    out = []
    for i in range(n):
        first = "110105" + (born + timedelta(days=i // 1000)).strftime("%Y%m%d") + f"{i % 1000:03d}"
        out.append(first + id_number_check_char(first))
    return out


_CN = str.maketrans("0123456789", "零一二三四五六七八九")


def _file(n: int, fmt: str) -> bytes:
    header = ["身份证号码", "姓名", "入职日期", "月工资(分)", "参保险种"]
    hired = date(2026, 3, 1)
    rows = [[x, "职工" + str(i).translate(_CN), hired, 600_000 + i, "养老、医疗、失业、工伤、生育"] for i, x in enumerate(_ids(n))]
    if fmt == "csv":
        lines = [",".join(header)] + [f"{r[0]},{r[1]},{hired.isoformat()},{r[3]},{r[4]}" for r in rows]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet()
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def main(rows: int, fmt: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imports-bench-"))
    os.environ.setdefault("SOCIALSEC_VAR_DIR", str(tmp))
    from devtools.keys import ensure_dev_keys

    ensure_dev_keys(Path(os.environ["SOCIALSEC_VAR_DIR"]))
    url = os.environ.get("REGISTRATION_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/registration.db")
    await upgrade_async("registration", url)
    settings = Settings(database_url=url, migrate_on_start=False, consumers_enabled=False)
    app = create_app(settings=settings, common=CommonSettings(),
                     clock=FrozenClock(datetime(2026, 3, 10, 2, tzinfo=UTC)))
    data = _file(rows, fmt)
    t0 = time.perf_counter()
    read_table(data)
    read_s = time.perf_counter() - t0
    from services.common.principal import encode_principal

    key = (Path(os.environ["SOCIALSEC_VAR_DIR"]) / "keys" / "gateway-signing.pem").read_text()
    prn = {"kind": "employer", "sub": "u", "credit_code": CC, "unit_name": "x"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registration", timeout=600) as client:
        def headers() -> dict[str, str]:
            return {"X-Principal": encode_principal(prn, audience="registration", private_key_pem=key, ttl=600)}

        r = await client.post("/registration/v1/employers", headers=headers(), json={
            "credit_code": CC, "name": "北京示例科技有限公司", "region_code": "110105", "address": "北京市朝阳区示例路1号",
            "contact": "李四 13800000000", "work_injury_class": 2})
        assert r.status_code == 201, r.text
        t0, c0 = time.perf_counter(), time.process_time()
        r = await client.post(f"/registration/v1/employers/{CC}/employee-imports", headers=headers(),
                              files={"file": (f"employees.{fmt}", data)})
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert r.status_code == 201, r.text[:500]
        out = r.json()
        if out["errors"]:
            print("first errors:", out["errors"][:3])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows} rows as {fmt} ({len(data) / 1e6:.1f} MB, {url.split(':')[0]}): import {took:.1f} s wall, {cpu:.1f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f}; reading the file alone {read_s:.1f} s); registered {out['registered']}, failed {out['failed']}; "
          f"peak memory {peak_mb:.0f} MB (resident)")
    await app.state.db.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    a = ap.parse_args()
    asyncio.run(main(a.rows, a.format))
