import pytest

from services.common.pagination import CursorInvalid, decode_cursor, encode_cursor


def test_cursor_round_trip_and_garbage():
    c = encode_cursor(["2026-01-01", "abc", 5])
    assert decode_cursor(c) == ["2026-01-01", "abc", 5]
    assert decode_cursor(None) is None
    for bad in ("!!!", "eyJ4IjoxfQ", "bm90IGpzb24"):
        with pytest.raises(CursorInvalid):
            decode_cursor(bad)


async def _park(svc, n):
    """n dead letters, three at each instant: a key of time and id has ties to break."""
    from datetime import UTC, datetime, timedelta

    from services.common.models import DeadLetter

    start = datetime(2026, 3, 1, tzinfo=UTC)
    async with svc.db.sessionmaker() as s:
        for i in range(n):
            s.add(DeadLetter(producer="p", event_id=f"e{i:04d}", type="t", event={}, error="x", attempts=5,
                             parked_at=start + timedelta(seconds=i // 3)))
        await s.commit()


async def _all_pages(svc, stmt, **kw):
    from services.common.pagination import keyset_page

    rows, cursors, cursor = [], [], None
    while True:
        async with svc.db.sessionmaker() as s:
            page = await keyset_page(s, stmt, cursor=cursor, **kw)
        rows += page.rows
        cursor = page.next_cursor
        if cursor is None:
            return rows, cursors
        cursors.append(cursor)


async def test_keyset_page_walks_every_row_once_in_key_order(ksvc):
    from sqlalchemy import select

    from services.common.models import DeadLetter

    await _park(ksvc, 11)
    keys = [DeadLetter.parked_at, DeadLetter.id]
    rows, cursors = await _all_pages(ksvc, select(DeadLetter), keys=keys, limit=2)
    assert [r.event_id for r in rows] == [f"e{i:04d}" for i in range(11)] and len(cursors) == 5
    # Newest first; a select of several things gives tuples of them.
    rows, _ = await _all_pages(ksvc, select(DeadLetter.event_id, DeadLetter.attempts), keys=[DeadLetter.id],
                               limit=4, descending=True)
    assert rows == [(f"e{i:04d}", 5) for i in reversed(range(11))]
    # A page that ends exactly on the last row has no next cursor.
    rows, cursors = await _all_pages(ksvc, select(DeadLetter), keys=[DeadLetter.id], limit=11)
    assert len(rows) == 11 and cursors == []


async def test_keyset_page_refuses_a_cursor_that_does_not_fit_its_keys(ksvc):
    from sqlalchemy import select

    from services.common.models import DeadLetter
    from services.common.pagination import keyset_page

    await _park(ksvc, 3)
    two, one = [DeadLetter.parked_at, DeadLetter.id], [DeadLetter.id]
    cases = [(two, [1]), (two, ["2026-03-01T00:00:00+00:00", "1"]), (two, ["not a time", 1]), (two, [5, 1]),
             (one, [True]), (one, ["1"]), (one, [1, 2]), (one, [1.5])]
    for keys, key in cases:
        async with ksvc.db.sessionmaker() as s:
            with pytest.raises(CursorInvalid):
                await keyset_page(s, select(DeadLetter), keys=keys, cursor=encode_cursor(key), limit=2)
