"""Engines and session factories: a sync one for actors, an async one for the web.

SQLite (the embedded default) runs in WAL mode with a busy timeout so the web can read
while a worker writes; transactions are kept short by the callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, QueuePool, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _prepare_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    """A sync engine (actors, migrations, the launcher)."""
    if url.startswith("sqlite"):
        _prepare_sqlite_dir(url)
        # One connection per process: the worker threads of a process take turns on a
        # Python lock instead of SQLite's busy handler, which sleeps for milliseconds.
        # IMMEDIATE: sqlite3 opens each write transaction with BEGIN IMMEDIATE, taking
        # the write lock up front; a deferred transaction that reads and then writes can
        # fail at once with SQLITE_BUSY when another process wrote in between.
        engine = create_engine(
            url,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
                "isolation_level": "IMMEDIATE",
            },
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def make_async_engine(url: str) -> AsyncEngine:
    """An asyncio engine (the web)."""
    if url.startswith("sqlite"):
        _prepare_sqlite_dir(url)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        # Deferred BEGIN (sqlite3 opens a transaction only before a write): the web
        # mostly reads, and its reads must not queue behind writers.
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
