import pytest

from services.common.pagination import CursorInvalid, decode_cursor, encode_cursor


def test_cursor_round_trip_and_garbage():
    c = encode_cursor(["2026-01-01", "abc", 5])
    assert decode_cursor(c) == ["2026-01-01", "abc", 5]
    assert decode_cursor(None) is None
    for bad in ("!!!", "eyJ4IjoxfQ", "bm90IGpzb24"):
        with pytest.raises(CursorInvalid):
            decode_cursor(bad)
