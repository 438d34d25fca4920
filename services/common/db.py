"""Async SQLAlchemy: one engine per service, one session (and transaction) per request.

SQLite (aiosqlite) is the embedded default: WAL, foreign keys on, a busy timeout.
A write transaction begins with `BEGIN IMMEDIATE`, so it holds the write lock from
its first statement (two requests racing for one unique row wait for each other
instead of failing on a lock upgrade). A read transaction begins with a plain
(deferred) `BEGIN`: on WAL it reads a snapshot beside every other reader and beside
the one writer, and never waits for the write lock. PostgreSQL (asyncpg) in
production. The same code drives both.

Which one a request gets is chosen by its HTTP method (`DbSession`): GET, HEAD and
OPTIONS read, everything else writes, so no route can forget. A read session
refuses to write (`ReadOnlySessionError`, loudly, on every database): a GET that
must record something (an audit row, a lazy state change) asks for
`DbWriteSession`. Work outside requests uses `Database.sessionmaker` (writes) or
`Database.read_sessionmaker` (reads). The session commits when the route function
returns, before the response is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import BigInteger, Integer, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from services.common.errors import DomainError

# Autoincrement 64-bit keys that SQLite also treats as rowid aliases.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

# The HTTP methods whose request transaction only reads.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Execution option marking the engine of read transactions (a deferred BEGIN on SQLite).
_READ_ONLY = "socialsec_read_only"


class ReadOnlySessionError(RuntimeError):
    """A read transaction tried to write: the route must take `DbWriteSession`."""


class ReadOnlySession(Session):
    """A session of read transactions: any INSERT, UPDATE or DELETE through it is refused."""


def _refuse(what: str) -> None:
    raise ReadOnlySessionError(f"{what} in a read-only transaction (a GET that writes must use DbWriteSession)")


@event.listens_for(ReadOnlySession, "before_flush")
def _no_flush_of_changes(session: Session, _ctx: UOWTransaction, _instances: object) -> None:
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        _refuse("a flush of changes")


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _no_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _refuse("an INSERT, UPDATE or DELETE")


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Read transactions come through the engine marked read-only (it shares this
        # listener and the pool): a deferred BEGIN takes no lock until it writes.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            # A file has no server that could drop the connection: no ping on every checkout
            # (through aiosqlite it is 4 of a simple read's 13 hops to the connection's thread).
            kwargs["pool_pre_ping"] = False
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            _install_sqlite_pragmas(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self.read_engine: AsyncEngine = self.engine.execution_options(**{_READ_ONLY: True})
        self.read_sessionmaker = async_sessionmaker(
            self.read_engine, expire_on_commit=False, autoflush=True, sync_session_class=ReadOnlySession,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, reading or writing by the HTTP method; commit when the route returns.

    GET, HEAD and OPTIONS get a read transaction, every other method a write
    transaction. Rolled back on error; a refusal marked `keeps_changes` (a wrong
    PIN counts a try) commits what the route recorded before refusing, then is
    answered as usual.
    """
    db: Database = request.app.state.db
    maker = db.read_sessionmaker if request.method in READ_METHODS else db.sessionmaker
    async with _transaction(maker) as session:
        yield session


async def get_write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A write transaction whatever the method: for a GET that records something (audit, lazy change)."""
    db: Database = request.app.state.db
    async with _transaction(db.sessionmaker) as session:
        yield session


@asynccontextmanager
async def _transaction(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with maker() as session:
        try:
            yield session
        except DomainError as exc:
            if exc.keeps_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit runs when the route function returns, before the
# response is sent, so a failed commit is an error answer, not a lie.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
DbWriteSession = Annotated[AsyncSession, Depends(get_write_session, scope="function")]
