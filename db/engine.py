"""Engines and session factories: a sync one for actors, an async one for the web.

SQLite (the embedded default) runs in WAL mode with a busy timeout so the web can read
while a worker writes; transactions are kept short by the callers.

:class:`ConnectionRunner` gives async code (the web's busiest routes) a sync connection
for a whole unit of work at the cost of one hand-off, instead of one per DB-API call.

PostgreSQL engines are bounded so that nothing waits forever on a server that is gone:
a connect timeout, a statement timeout the server enforces, a pool timeout, and a
pre-ping that replaces a pooled connection the server dropped (a restart) before it is
used, so the first request after a restart does not fail.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, QueuePool, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT_S = 5.0
LIBPQ_LEAST_CONNECT_TIMEOUT_S = 2  # libpq and psycopg treat anything less as 2 s
#: Reading threads (and connections) of a :class:`ConnectionRunner` on SQLite; it has one
#: writing thread besides. Readers in WAL mode don't wait for the writer.
RUNNER_SQLITE_READERS = 2

T = TypeVar("T")


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


def postgres_connect_args(
    url: str, *, connect_timeout: float, statement_timeout: float | None
) -> dict[str, Any]:
    """The libpq options that bound a PostgreSQL connection: ``connect_timeout`` (whole
    seconds, at least 2) and ``statement_timeout`` (the server cancels a statement that
    runs longer; None: no limit). A value the URL sets itself wins, and the URL's other
    ``options`` (a ``search_path``, say) are kept: ``connect_args`` replace the URL's
    query parameters of the same name rather than merging with them."""
    query = make_url(url).query
    args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        args["connect_timeout"] = max(LIBPQ_LEAST_CONNECT_TIMEOUT_S, math.ceil(connect_timeout))
    if statement_timeout is not None:
        given = query.get("options", "")
        given = " ".join(given) if isinstance(given, tuple) else given
        # Ours first: when the URL sets statement_timeout too, its later -c wins.
        limit = f"-c statement_timeout={math.ceil(statement_timeout * 1000)}"
        args["options"] = f"{limit} {given}".strip()
    return args


def _postgres_options(
    url: str, connect_timeout: float, statement_timeout: float | None
) -> dict[str, Any]:
    """What both engines on PostgreSQL share: bounded connects, statements and pool
    waits, and a pre-ping so the first request after a restart does not fail."""
    return {
        "connect_args": postgres_connect_args(
            url, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        ),
        "pool_pre_ping": True,
        "pool_timeout": connect_timeout,
    }


def make_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    statement_timeout: float | None = None,
    sqlite_connections: int = 1,
) -> Engine:
    """A sync engine (actors, migrations, the launcher).

    Parameters:
      connect_timeout: seconds to connect to PostgreSQL, and to wait for a pooled
        connection.
      statement_timeout: seconds one PostgreSQL statement may run; None (the default,
        for migrations, which may rewrite a large table) puts no limit on it.
      sqlite_connections: the pool's size on SQLite (one, for a worker process).
    """
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
            pool_size=sqlite_connections,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        **_postgres_options(url, connect_timeout, statement_timeout),
    )


def make_async_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    statement_timeout: float | None = None,
) -> AsyncEngine:
    """An asyncio engine (the web); the timeouts as for :func:`make_engine`."""
    if url.startswith("sqlite"):
        _prepare_sqlite_dir(url)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        # Deferred BEGIN (sqlite3 opens a transaction only before a write): the web
        # mostly reads, and its reads must not queue behind writers.
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        **_postgres_options(url, connect_timeout, statement_timeout),
    )


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


class ConnectionRunner:
    """Runs a function of one sync :class:`Connection` for async code, with a single
    hand-off however many statements the function runs.

    aiosqlite runs every DB-API call (open a cursor, execute, fetch, close, commit) in
    its connection's thread, so each statement costs several thread hops, and on a busy
    event loop every hop waits for the GIL: most of a request's time and its tail. On
    SQLite the function therefore runs whole in a worker thread, on a sync engine of its
    own (SQLite's file is the shared state; WAL lets its readers run beside the async
    engine's). On PostgreSQL, whose driver is natively async, it runs on the async
    engine in SQLAlchemy's greenlet (``AsyncConnection.run_sync``): no thread at all.

    On SQLite, work that writes (``writes=True``) runs on one writing thread of its
    own, one unit after the other, and reads on a few reading threads. Why: with every
    thread free to write, two write transactions of the same process met on SQLite's
    lock, and the loser slept in SQLite's busy handler (1, 2, 5, 10, 15 ms ... between
    tries, long after the lock was free): the API's p99 was those sleeps, and reads
    queued behind the sleeping threads. Queued on one thread, writes follow each other
    at once; only another process's write (a worker's) still meets the busy handler.

    The function gets a connection outside any transaction, commits what it must
    itself (``connection.commit()``), and whatever it leaves uncommitted is rolled back.

    Parameters:
      url: the sync database URL (``Settings.database_url``).
      async_engine: the async engine of the same database, used on PostgreSQL.
      connect_timeout, statement_timeout: as for :func:`make_engine`.
    """

    def __init__(
        self,
        url: str,
        *,
        async_engine: AsyncEngine,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        statement_timeout: float | None = None,
    ) -> None:
        self.async_engine = async_engine
        self.sync_engine: Engine | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None
        if url.startswith("sqlite"):
            # As many connections as threads: no thread ever waits for the pool, and no
            # more threads than that contend for the GIL.
            self._readers = ThreadPoolExecutor(RUNNER_SQLITE_READERS, thread_name_prefix="db")
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="db-write")
            self.sync_engine = make_engine(
                url,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                sqlite_connections=RUNNER_SQLITE_READERS + 1,
            )

    async def run(self, work: Callable[..., T], *args: Any, writes: bool = False) -> T:
        """``work(connection, *args)``, awaited; ``writes``: it may write."""
        threads = self._writer if writes else self._readers
        if threads is None:
            async with self.async_engine.connect() as connection:
                return await connection.run_sync(work, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(threads, self._in_thread, work, args)

    def _in_thread(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self.sync_engine is not None
        with self.sync_engine.connect() as connection:
            return work(connection, *args)

    def dispose(self) -> None:
        for threads in (self._readers, self._writer):
            if threads is not None:
                threads.shutdown()
        if self.sync_engine is not None:
            self.sync_engine.dispose()
