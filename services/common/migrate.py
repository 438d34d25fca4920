"""Alembic, driven from code: each service's `migrations/` on SQLite or PostgreSQL.

`python -m services.common.migrate [service ...]` upgrades the named services (all
by default) to head, using each service's settings.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, event, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SERVICES = ("registration", "contribution", "card", "review")
_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ROOT / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def _do_run(connection: Connection, target_metadata: MetaData) -> None:
    # One transaction for the whole upgrade on both databases: a migration killed half-way
    # (Ctrl-C during `make run`) leaves the database as it was, never tables without their
    # version row (SQLite runs DDL inside the transaction that `migration_engine` begins).
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several replicas starting at once migrate one after another.
            context.execute(text("SELECT pg_advisory_xact_lock(74221905)"))
        context.run_migrations()


def migration_engine(url: str) -> AsyncEngine:
    """An engine for migrations; on SQLite its transactions are ours (BEGIN IMMEDIATE), DDL included."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # the driver would commit before every DDL statement

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is not None:
        _do_run(connection, target_metadata)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    assert url

    async def _go() -> None:
        engine = migration_engine(url)
        async with engine.connect() as conn:
            await conn.run_sync(_do_run, target_metadata)
            await conn.commit()
        await engine.dispose()

    asyncio.run(_go())


async def upgrade_async(service: str, url: str, revision: str = "head") -> None:
    """Upgrade a service database from inside a running event loop (service start-up)."""
    engine = migration_engine(url)
    try:
        async with engine.connect() as conn:

            def _upgrade(sync_conn: Connection) -> None:
                cfg = alembic_config(service, url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(_upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Upgrade a service database (command line, tests); safe to call under a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_async(service, url, revision))
        return
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(upgrade_async(service, url, revision))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def settings_for(service: str) -> tuple[Any, Any]:
    """The service's settings and the shared settings."""
    mod = importlib.import_module(f"services.{service}.settings")
    from services.common.settings import CommonSettings

    return mod.Settings(), CommonSettings()


def main(argv: list[str]) -> int:
    names = argv or list(SERVICES)
    for name in names:
        if name not in SERVICES:
            print(f"unknown service {name}", file=sys.stderr)
            return 2
        settings, common = settings_for(name)
        common.var_dir.mkdir(parents=True, exist_ok=True)
        url = settings.resolved_database_url(common)
        upgrade(name, url)
        print(f"{name}: migrated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
