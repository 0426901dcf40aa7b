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


def _manual_begin(dbapi_connection: Any, _record: Any) -> None:
    # Let the "begin" event below issue BEGIN, not the sqlite3 module.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    # Take the write lock when the transaction starts: a read that later upgrades to a
    # write can fail at once with SQLITE_BUSY when another process wrote in between,
    # while BEGIN IMMEDIATE simply waits its turn (busy timeout).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


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
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _manual_begin)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def make_async_engine(url: str) -> AsyncEngine:
    """An asyncio engine (the web)."""
    if url.startswith("sqlite"):
        _prepare_sqlite_dir(url)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        # Plain deferred BEGIN: the web mostly reads, and reads must not queue behind
        # writers. Its writes start their own transaction with the write itself.
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
