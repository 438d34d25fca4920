"""Migrations run in one transaction on SQLite too: interrupted, they leave nothing half-done."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from services.common.migrate import migration_engine


async def test_sqlite_ddl_rolls_back_with_its_transaction(tmp_path: Path) -> None:
    engine = migration_engine(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    try:
        async with engine.connect() as conn:
            await conn.begin()
            await conn.execute(text("CREATE TABLE half (id INTEGER)"))
            await conn.execute(text("CREATE TABLE done_too (id INTEGER)"))
            await conn.rollback()  # what a migration killed before its commit amounts to
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))).scalars().all()
        assert "half" not in names and "done_too" not in names
    finally:
        await engine.dispose()
