"""No bad input ever gets a 500: wrong JSON, wrong types, oversized strings, on every route."""

from __future__ import annotations

from typing import Any

from tests.helpers import channel, staff

BODIES: list[Any] = [
    b"", b"{", b"\xff\xfe", b"[]", b"null", b'"x"', b"123", b'{"kind": null}', b'{"payload": "' + b"a" * 70000 + b'"}',
    b'{"card_no": {"a": 1}, "bank": 1, "id_number": [], "name": 5, "old_pin": 123456, "new_pin": true}',
    b'{"region_code": "\\u0000", "effective_from": "x", "pin_max_tries": 1e309}',
]


async def test_no_route_answers_500(flow: Any, idn: str) -> None:
    card = await flow.active_card(idn)
    routes = [
        ("POST", "/card/v1/me/applications", flow.citizen(idn)),
        ("POST", f"/card/v1/cards/{card['id']}/issuance", staff()),
        ("POST", "/card/v1/activations", channel("bank")),
        ("PUT", "/card/v1/me/card/pin", flow.citizen(idn)),
        ("POST", f"/card/v1/cards/{card['id']}/pin-reset", channel("window")),
        ("POST", "/card/v1/me/card/loss-reports", flow.citizen(idn)),
        ("POST", "/card/v1/me/card/loss-reports", channel("hotline")),
        ("POST", "/card/v1/ecard/verifications", channel("hospital")),
        ("POST", "/card/v1/rules", staff("admin")),
        ("POST", f"/card/v1/cards/{card['id']}/cancellation", staff()),
    ]
    for method, path, prn in routes:
        for body in BODIES:
            r = await flow.client.request(
                method, path, content=body, headers=flow.h(prn, **{"content-type": "application/json"})
            )
            assert r.status_code < 500, (method, path, body[:40], r.status_code, r.text[:200])
            if body not in (b"", b"null"):  # no input is valid where the input is optional
                assert r.status_code >= 400, (method, path, body[:40], r.status_code)
                assert r.headers["content-type"].startswith("application/problem+json")
    for path in (
        "/card/v1/cards?status=applied&limit=0", "/card/v1/cards?limit=abc", "/card/v1/cards?cursor=" + "A" * 600,
        "/card/v1/cards?cursor=WzEsMl0", "/card/v1/cards/" + "x" * 100, "/card/v1/rules?cursor=WyJhIl0",
    ):
        r = await flow.client.get(path, headers=flow.h(staff()))
        assert 400 <= r.status_code < 500, (path, r.status_code)
