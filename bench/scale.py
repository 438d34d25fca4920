"""Province scale on PostgreSQL: N insured persons in registration, a 100,000-employee unit.

    .venv/bin/python -m bench.scale [--persons 1000000] [--employees 100000] [--seconds 10]
                                    [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Fills registration's database with N persons (COPY; id numbers encrypted and hashed
exactly as the service does, with the same keys), each with one enrolment and one
history entry; one unit employs `--employees` of them. Contribution's read model gets
the same unit and employees (as registration's events would have built it). Then, through
each service's own HTTP API (a valid gateway principal, straight to the service):

- a citizen's `GET /registration/v1/me`, random citizens, wrk at 1 and 16 connections;
- the unit's roster, pages deep inside it (keyset cursors past the 50,000th employee);
- contribution's monthly declaration of the unit (`POST .../employers/{cc}/declarations`):
  seconds, and the contribution process's peak resident memory.

Databases `socialsec_scale_registration` and `socialsec_scale_contribution` are dropped
and created anew. wrk is Debian's package `wrk` (installed when missing and run as root).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench._stack import DEFAULT_PG, Process, pg_url, recreate_database, start_service, wrk_random_gets
from devtools.keys import ensure_dev_keys
from services.common.identifiers import credit_code_check_char, id_number_check_char
from services.common.pagination import encode_cursor
from services.common.pii import configure_pii
from services.common.principal import encode_principal
from services.common.settings import CommonSettings

REGIONS = ("110105", "310104", "440305", "320102", "330106", "510107", "420106", "610113")
UNIT_BODY = "91110105MA0BENCH1"
NAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
CHUNK = 50_000


def id_number(i: int) -> str:
    """The i-th distinct valid id number: a region, a birth date, a sequence."""
    region = REGIONS[i % len(REGIONS)]
    rest = i // len(REGIONS)
    born = date(1960, 1, 1) + timedelta(days=rest // 1000)
    first = f"{region}{born:%Y%m%d}{rest % 1000:03d}"
    return first + id_number_check_char(first)


def name_of(i: int) -> str:
    return NAMES[i % len(NAMES)] + GIVEN[(i // len(NAMES)) % len(GIVEN)] + GIVEN[(i // 7) % len(GIVEN)]


def person_id(i: int) -> str:
    return str(uuid.UUID(int=(0xBE << 120) | i))


async def fill(args: argparse.Namespace, reg_dsn: str, con_dsn: str, credit_code: str, now: datetime) -> None:
    from services.common.pii import cipher

    c = cipher()
    reg = await asyncpg.connect(reg_dsn)
    con = await asyncpg.connect(con_dsn)
    try:
        await reg.execute(
            "INSERT INTO employers (credit_code, name, region_code, address, contact, work_injury_class, registered_on,"
            " created_at, created_by) VALUES ($1, '北京规模测试有限公司', '110105', '北京市朝阳区', '李四', 2, $2, $3, 'bench')",
            credit_code, date(2024, 1, 1), now,
        )
        await con.execute(
            "INSERT INTO known_employers (credit_code, name, region_code, work_injury_class, registered_on)"
            " VALUES ($1, '北京规模测试有限公司', '110105', 2, $2)", credit_code, date(2024, 1, 1),
        )
        started = time.perf_counter()
        for lo in range(0, args.persons, CHUNK):
            hi = min(lo + CHUNK, args.persons)
            persons, enrolments, changes, known_p, known_e = [], [], [], [], []
            for i in range(lo, hi):
                idn = id_number(i)
                pid = person_id(i)
                h = c.hash(idn)
                born = date(int(idn[6:10]), int(idn[10:12]), int(idn[12:14]))
                sex = "male" if int(idn[16]) % 2 else "female"
                masked = idn[:6] + "********" + idn[-4:]
                persons.append((pid, h, c.encrypt(idn), masked, name_of(i), born, sex, now, now))
                employee = i < args.employees
                eid = str(uuid.UUID(int=(0xEE << 120) | i))
                enrolments.append((
                    i + 1, eid, pid, "employee" if employee else "flexible", "active",
                    "110105" if employee else REGIONS[i % len(REGIONS)], None if employee else REGIONS[i % len(REGIONS)],
                    json.dumps(["pension", "medical", "unemployment", "work_injury", "maternity"] if employee
                               else ["pension", "medical"]),
                    "2024-01", credit_code if employee else None, date(2024, 1, 1) if employee else None,
                    800_000 + (i % 50) * 10_000 if employee else None, False, 0, date(2024, 1, 1), now, "bench",
                    pid, pid if employee else None, f"{credit_code}:{pid}" if employee else None,
                ))
                changes.append((pid, now, "enrolled", eid, "employee" if employee else "flexible", "110105",
                                credit_code if employee else None, "2024-01"))
                if employee:
                    known_p.append((pid, h, masked))
                    known_e.append((eid, pid, h, "employee", "110105",
                                    json.dumps(["pension", "medical", "unemployment", "work_injury", "maternity"]),
                                    "2024-01", credit_code, 800_000 + (i % 50) * 10_000))
            await reg.copy_records_to_table(
                "persons", records=persons,
                columns=["id", "id_hash", "id_number", "id_masked", "name", "birth_date", "sex", "created_at", "updated_at"],
            )
            await reg.copy_records_to_table(
                "enrolments", records=enrolments,
                columns=["seq", "id", "person_id", "category", "status", "region_code", "household_region_code",
                         "insurance_types", "start_month", "employer_credit_code", "hire_date", "monthly_wage_fen",
                         "late", "late_days", "registered_on", "created_at", "created_by", "open_pension_key",
                         "open_medical_key", "open_employment_key"],
            )
            await reg.copy_records_to_table(
                "person_changes", records=changes,
                columns=["person_id", "at", "change", "enrolment_id", "category", "region_code",
                         "employer_credit_code", "month"],
            )
            if known_p:
                await con.copy_records_to_table("known_persons", records=known_p,
                                                columns=["person_id", "id_hash", "id_masked"])
                await con.copy_records_to_table(
                    "known_enrolments", records=known_e,
                    columns=["enrolment_id", "person_id", "id_hash", "category", "region_code", "insurance_types",
                             "start_month", "credit_code", "monthly_wage_fen"],
                )
            done = hi
            rate = done / (time.perf_counter() - started)
            print(f"  {done:,} persons ({rate:,.0f}/s)", file=sys.stderr, flush=True)
        await reg.execute("SELECT setval(pg_get_serial_sequence('enrolments', 'seq'), $1)", args.persons + 1)
        for db in (reg, con):
            await db.execute("ANALYZE")
    finally:
        await reg.close()
        await con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pg", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()
    args.employees = min(args.employees, args.persons)

    work = Path(tempfile.mkdtemp(prefix="socialsec-scale-"))
    ensure_dev_keys(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "REGISTRATION_", "CONTRIBUTION_"))}
    env["SOCIALSEC_VAR_DIR"] = str(work)
    env["REGISTRATION_POLL_INTERVAL_SECONDS"] = "3600"
    env["CONTRIBUTION_POLL_INTERVAL_SECONDS"] = "3600"
    os.environ["SOCIALSEC_VAR_DIR"] = str(work)
    common = CommonSettings()
    configure_pii(common.pii_key_bytes(), common.pii_hash_key_bytes())
    signing_key = (work / "keys" / "gateway-signing.pem").read_text()

    dbs = {"registration": "socialsec_scale_registration", "contribution": "socialsec_scale_contribution"}
    for name, db in dbs.items():
        recreate_database(args.pg, db)
        env[f"{name.upper()}_DATABASE_URL"] = pg_url(args.pg, db)
    import subprocess

    subprocess.run([sys.executable, "-m", "services.common.migrate", *dbs], env=env, check=True, capture_output=True)
    credit_code = UNIT_BODY + credit_code_check_char(UNIT_BODY)
    now = datetime.now(UTC)
    print(f"filling {args.persons:,} persons ({args.employees:,} employees of one unit)...", file=sys.stderr)
    t0 = time.perf_counter()
    asyncio.run(fill(args, pg_url(args.pg, dbs["registration"], driver="postgresql"),
                     pg_url(args.pg, dbs["contribution"], driver="postgresql"), credit_code, now))
    fill_s = time.perf_counter() - t0

    procs: list[Process] = []
    results: list[tuple[str, str, str]] = []
    try:
        reg = start_service("registration", "services.registration.app:app", env, log=work / "registration.log")
        procs.append(reg)
        con = start_service("contribution", "services.contribution.app:app", env, log=work / "contribution.log")
        procs.append(con)
        ttl = 3600

        rng = random.Random(11)
        citizens = []
        for i in rng.sample(range(args.persons), min(5000, args.persons)):
            idn = id_number(i)
            prn = {"kind": "citizen", "sub": "alipay-" + hashlib.sha256(idn.encode()).hexdigest()[:16],
                   "issuer": "sandbox-alipay", "platform": "alipay", "id_number": idn, "name": name_of(i),
                   "realname_level": 3, "auth_method": "face", "auth_time": int(time.time())}
            citizens.append(("/registration/v1/me",
                             encode_principal(prn, audience="registration", private_key_pem=signing_key, ttl=ttl)))
        check = httpx.get(reg.url + citizens[0][0], headers={"X-Principal": citizens[0][1]}, timeout=10)
        assert check.status_code == 200 and check.json()["registered"], check.text
        for conns in (1, 16):
            r = wrk_random_gets(reg.url, citizens, header="X-Principal", connections=conns, seconds=args.seconds,
                                workdir=work)
            results.append((f"GET /registration/v1/me, random citizen, {conns} conn",
                            f"{r['rps']:,.0f} req/s", f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                            + (f", {int(r['non_2xx'])} non-2xx" if r["non_2xx"] else "")))

        unit = {"kind": "employer", "sub": f"unit-{credit_code}", "issuer": "sandbox-alipay", "credit_code": credit_code,
                "unit_name": "北京规模测试有限公司", "operator": "经办人"}
        unit_reg = encode_principal(unit, audience="registration", private_key_pem=signing_key, ttl=ttl)
        deep = [(f"/registration/v1/employers/{credit_code}/employees?limit=50&cursor={encode_cursor([seq])}", unit_reg)
                for seq in rng.sample(range(args.employees // 2, max(args.employees - 50, args.employees // 2 + 1)),
                                      min(2000, max(args.employees // 2 - 50, 1)))]
        check = httpx.get(reg.url + deep[0][0], headers={"X-Principal": unit_reg}, timeout=10)
        assert check.status_code == 200 and len(check.json()["items"]) == 50, check.text
        for conns in (1, 16):
            r = wrk_random_gets(reg.url, deep, header="X-Principal", connections=conns, seconds=args.seconds,
                                workdir=work)
            results.append((f"roster page of 50 past the {args.employees // 2:,}th employee, {conns} conn",
                            f"{r['rps']:,.0f} req/s", f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"))

        unit_con = encode_principal(unit, audience="contribution", private_key_pem=signing_key, ttl=ttl)
        month = now.strftime("%Y-%m")
        before = con.rss_peak_mib()
        t = time.perf_counter()
        resp = httpx.post(f"{con.url}/contribution/v1/employers/{credit_code}/declarations", json={"month": month},
                          headers={"X-Principal": unit_con}, timeout=600)
        took = time.perf_counter() - t
        size = len(resp.content)
        ok = resp.status_code == 201
        body = resp.json() if ok else {}
        results.append((f"monthly declaration of {args.employees:,} employees",
                        f"{took:.1f} s" + ("" if ok else f" (HTTP {resp.status_code}: {resp.text[:200]})"),
                        f"peak RSS {con.rss_peak_mib():.0f} MiB (before {before:.0f}); {len(body.get('lines', [])):,} lines, "
                        f"answer {size / 1e6:.1f} MB, total {body.get('total_fen', 0):,} fen"))
    finally:
        for p in procs:
            p.stop()
        if not args.keep:
            for db in dbs.values():
                recreate_database(args.pg, db)
                from bench._stack import psql

                psql(args.pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    print(f"\nbench.scale on PostgreSQL, {os.cpu_count()} CPUs, {args.persons:,} persons "
          f"(filled in {fill_s:.0f} s, {args.persons / fill_s:,.0f}/s), wrk {args.seconds} s per line")
    width = max(len(r[0]) for r in results)
    for label, a, b in results:
        print(f"  {label:<{width}}  {a:>14}  {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
