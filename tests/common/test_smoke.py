async def test_health_and_ready(make_service):
    svc = await make_service("registration")
    r = await svc.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await svc.client.get("/readyz")
    assert r.status_code == 200
    assert r.headers["x-request-id"]
