"""How one long writing transaction on the PostgreSQL server delays events, on each transport.

    .venv/bin/python -m bench.long_writer [--hold 30] [--events 6] [--transport feed|nats|both]
                                          [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

registration (producer) and card (consumer) run as real processes (`services.common.serve`), each
on a fresh database of the server (see tests/e2e/fault_stack.py). First a few events with nothing
else running on our side (the baseline); then a transaction that has written (it holds a
transaction id) is opened on another database of the same server and held `--hold` seconds, while
`--events` events are committed one by one, spread over the hold. Each event's delay is from its
commit to the consumer's transaction that applied it (the inbox row's `applied_at`).

The feed serves a row only once every transaction that started before it has ended, so on `feed`
the events committed during the hold wait for its end; on `nats` the relay publishes what has
committed and nothing waits. NATS at SOCIALSEC_NATS_URL (default nats://127.0.0.1:4222).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._stack import DEFAULT_PG
from tests.e2e.fault_stack import Pair


async def _applied_at(pair: Pair, event_id: str) -> datetime | None:
    value = await pair.scalar("card", "SELECT applied_at FROM inbox WHERE event_id = :id", id=event_id)
    if value is None:
        return None
    at: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def _commit_and_time(pair: Pair, n: int, start: int, spread: float, within: float) -> list[tuple[float, datetime]]:
    """Commit n events `spread` seconds apart; each one's commit-to-applied delay (seconds) and when it was applied."""
    committed: list[tuple[str, datetime]] = []
    for i in range(n):
        ids = await pair.insert_events(1, start=start + i)
        committed.append((ids[0], datetime.now(UTC)))
        if i < n - 1:
            await asyncio.sleep(spread)
    deadline = time.monotonic() + within
    delays: dict[str, tuple[float, datetime]] = {}
    while len(delays) < n and time.monotonic() < deadline:
        for event_id, at in committed:
            if event_id not in delays:
                applied = await _applied_at(pair, event_id)
                if applied is not None:
                    delays[event_id] = (max((applied - at).total_seconds(), 0.0), applied)
        await asyncio.sleep(0.05)
    if len(delays) < n:
        raise SystemExit(f"{n - len(delays)} events not applied within {within:.0f}s (logs under {pair.root})")
    return [delays[e] for e, _ in committed]


async def run(transport: str, *, pg_url: str, nats_url: str, hold: float, events: int) -> dict[str, float]:
    import asyncpg
    from sqlalchemy.engine import make_url

    root = Path(tempfile.mkdtemp(prefix=f"socialsec-bench-writer-{transport}-"))
    pair = Pair(root, pg_admin_url=pg_url, transport=transport, nats_url=nats_url,
                env={"CARD_POLL_INTERVAL_SECONDS": "0.5"})
    try:
        await pair.setup()
        pair.start("registration")
        pair.start("card")
        await pair.wait_ready("registration")
        await pair.wait_ready("card")
        baseline = [d for d, _ in await _commit_and_time(pair, 5, 0, 0.3, within=60)]

        u = make_url(pg_url)
        writer = await asyncpg.connect(user=u.username or "postgres", password=u.password,
                                       host=u.host or "127.0.0.1", port=u.port or 5432, database=u.database or "postgres")
        try:
            tx = writer.transaction()
            await tx.start()
            await writer.fetchval("SELECT pg_current_xact_id()")  # it has written: it holds a transaction id
            opened = time.monotonic()

            async def release() -> datetime:
                await asyncio.sleep(hold)
                await tx.rollback()
                return datetime.now(UTC)

            releasing = asyncio.create_task(release())
            spread = hold * 0.8 / max(events - 1, 1)
            await asyncio.sleep(hold * 0.05)
            timed = await _commit_and_time(pair, events, 100, spread, within=hold + 120)
            ended = await releasing
            held = time.monotonic() - opened
            under = [d for d, _ in timed]
            during = sum(1 for _, applied in timed if applied < ended)
        finally:
            await writer.close()
        return {
            "baseline_p50": statistics.median(baseline), "baseline_max": max(baseline),
            "under_min": min(under), "under_p50": statistics.median(under), "under_max": max(under), "held": held,
            "during": during,
        }
    finally:
        await pair.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the writing transaction stays open")
    parser.add_argument("--events", type=int, default=6, help="events committed during the hold")
    parser.add_argument("--transport", choices=["feed", "nats", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    nats_url = os.environ.get("SOCIALSEC_NATS_URL", "nats://127.0.0.1:4222")
    transports = ["feed", "nats"] if args.transport == "both" else [args.transport]
    print(f"a writing transaction held {args.hold:.0f} s on the same server; {args.events} events committed during it")
    print("| transport | no writer: p50 / max | writer open: min / p50 / max | applied before the writer ended |")
    print("|---|---|---|---|")
    for t in transports:
        r = asyncio.run(run(t, pg_url=args.postgres_url, nats_url=nats_url, hold=args.hold, events=args.events))
        print(f"| {t} | {r['baseline_p50'] * 1000:,.0f} / {r['baseline_max'] * 1000:,.0f} ms "
              f"| {r['under_min'] * 1000:,.0f} / {r['under_p50'] * 1000:,.0f} / {r['under_max'] * 1000:,.0f} ms "
              f"| {r['during']:.0f} of {args.events} |",
              flush=True)


if __name__ == "__main__":
    main()
