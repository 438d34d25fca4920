"""Shared fixtures: keys, per-test databases built by the migrations (SQLite, and
PostgreSQL when TEST_POSTGRES_URL is set), service clients and principals."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

_KEYS_DIR = Path(tempfile.mkdtemp(prefix="socialsec-test-"))
os.environ["SOCIALSEC_VAR_DIR"] = str(_KEYS_DIR)
os.environ["SOCIALSEC_LOG_JSON"] = "true"

from devtools.keys import ensure_dev_keys  # noqa: E402

ensure_dev_keys(_KEYS_DIR)
KEYS = _KEYS_DIR / "keys"
os.environ["SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE"] = str(KEYS / "gateway-signing.pub.pem")

from services.common.migrate import upgrade  # noqa: E402
from services.common.settings import CommonSettings  # noqa: E402
from tests.helpers import principal_headers  # noqa: E402,F401

PG_URL = os.environ.get("TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
_counter = itertools.count()


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    shutil.rmtree(_KEYS_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def common_settings() -> CommonSettings:
    return CommonSettings(var_dir=_KEYS_DIR)


# ---- databases ---------------------------------------------------------------


class _Templates:
    """Each service's schema is migrated once per backend, then copied per test."""

    def __init__(self) -> None:
        self.sqlite: dict[str, Path] = {}
        self.pg: dict[str, str] = {}
        self.tag = uuid.uuid4().hex[:8]

    def sqlite_template(self, service: str) -> Path:
        if service not in self.sqlite:
            path = _KEYS_DIR / "templates" / f"{service}.db"
            path.parent.mkdir(exist_ok=True)
            upgrade(service, f"sqlite+aiosqlite:///{path}")
            self.sqlite[service] = path
        return self.sqlite[service]

    def pg_template(self, service: str) -> str:
        if service not in self.pg:
            name = f"sst_{self.tag}_{service}_tmpl"
            _pg_admin(f'CREATE DATABASE "{name}"')
            upgrade(service, _pg_url(name))
            self.pg[service] = name
        return self.pg[service]


def _pg_url(dbname: str) -> str:
    from sqlalchemy.engine import make_url

    assert PG_URL
    url = make_url(PG_URL).set(drivername="postgresql+asyncpg", database=dbname)
    return url.render_as_string(hide_password=False)


def _pg_admin(sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    assert PG_URL
    u = make_url(PG_URL)

    async def go() -> None:
        conn = await asyncpg.connect(
            user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
            port=u.port or 5432, database=u.database or "postgres",
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go()) if not _loop_running() else _run_in_thread(go)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(fn: Callable[[], Awaitable[None]]) -> None:
    import threading

    err: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(fn())
        except BaseException as e:  # pragma: no cover
            err.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if err:
        raise err[0]


_templates = _Templates()


def pytest_unconfigure(config: Any) -> None:
    for name in _templates.pg.values():
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            pass


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_db_url(backend: str, tmp_path: Path) -> Any:
    """A factory of fresh, migrated databases for a service, dropped after the test."""
    created: list[str] = []

    def make(service: str) -> str:
        n = next(_counter)
        if backend == "sqlite":
            template = _templates.sqlite_template(service)
            path = tmp_path / f"{service}-{n}.db"
            shutil.copy(template, path)
            return f"sqlite+aiosqlite:///{path}"
        template = _templates.pg_template(service)
        name = f"sst_{_templates.tag}_{service}_{n}"
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        created.append(name)
        return _pg_url(name)

    yield make
    for name in created:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- service harness -----------------------------------------------------------


@dataclass
class Harness:
    """A service app driven in-process, its client and its database."""

    name: str
    app: Any
    client: httpx.AsyncClient
    url: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Any:
        return self.app.state.db

    @property
    def clock(self) -> Any:
        return self.app.state.clock

    def headers(self, prn: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
        """Headers carrying a principal minted for this service."""
        h = dict(extra)
        if prn is not None:
            h.update(principal_headers(self.name, prn))
        return h


@pytest.fixture
async def make_service(make_db_url: Any, common_settings: CommonSettings) -> AsyncIterator[Any]:
    """Build a service app on a fresh database: `await make_service("card", clock=...)`."""
    import importlib

    stack: list[tuple[LifespanManager, httpx.AsyncClient]] = []

    async def make(service: str, *, clock: Any = None, app_factory: Any = None, **overrides: Any) -> Harness:
        settings_mod = importlib.import_module(f"services.{service}.settings")
        app_mod = importlib.import_module(f"services.{service}.app")
        url = make_db_url(service)
        settings = settings_mod.Settings(
            database_url=url, migrate_on_start=False, consumers_enabled=False, **overrides
        )
        factory = app_factory or app_mod.create_app
        app = factory(settings=settings, common=common_settings, clock=clock)
        manager = LifespanManager(app)
        await manager.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url=f"http://{service}")
        stack.append((manager, client))
        return Harness(name=service, app=app, client=client, url=url)

    yield make
    for manager, client in reversed(stack):
        await client.aclose()
        await manager.__aexit__(None, None, None)
