"""Which errors mean "the store cannot answer now", shared by the web (a 503) and the
workers (wait it out with backoff).

An outage is an answer the store gives by not answering: refused or dropped
connections, timeouts, a database locked beyond its busy timeout, a read-only or full
disk, Redis out of memory or read-only. Errors that are bugs (a missing table, bad
SQL, an IntegrityError, a wrong type) are not outages and must still fail loudly. The
drivers wrap their own socket and asyncio timeouts (psycopg's connect timeout is an
OperationalError, redis-py's a redis TimeoutError, the pool's a SQLAlchemy
TimeoutError), so a bare OSError is not taken for an outage: it may be a file.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

import redis.exceptions
import sqlalchemy.exc

Store = Literal["database", "redis"]

# PostgreSQL's read_only_sql_transaction (a standby, or default_transaction_read_only):
# libpq reports it as an InternalError, but the database is refusing writes, not broken.
PG_READ_ONLY = "25006"
# SQLite's primary result codes that mean "not now" rather than "wrong": busy or locked
# past the busy timeout, I/O error, disk full, cannot open the file, read-only file
# (a remount), locking protocol error. SQLITE_ERROR ("no such table", bad SQL) is not.
SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PROTOCOL,
    }
)
# ReadOnlyError: a replica answering after a failover; OutOfMemoryError: maxmemory with
# noeviction; BusyLoadingError (a ConnectionError): Redis still loading its AOF.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
# Redis error replies meaning "cannot serve this now"; inside a script the reply reads
# "ERR Error running script ... -OOM command not allowed ...".
REDIS_UNAVAILABLE_REPLIES = ("OOM", "READONLY", "MISCONF", "LOADING", "MASTERDOWN", "TRYAGAIN")


def _database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DisconnectionError | sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # the connection died under the statement
    if isinstance(exc, sqlalchemy.exc.InternalError):
        return getattr(exc.orig, "sqlstate", None) == PG_READ_ONLY
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        code = getattr(exc.orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in SQLITE_UNAVAILABLE
    return True


def _redis_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, REDIS_UNAVAILABLE):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        # A reply redis-py files under no class of its own (MISCONF), or one quoted in
        # a script's error (a pipeline rewrites the text of those it does classify).
        reply = str(exc)
        return reply.startswith(REDIS_UNAVAILABLE_REPLIES) or any(
            f"-{code} " in reply for code in REDIS_UNAVAILABLE_REPLIES
        )
    return False


def unavailable_store(exc: BaseException) -> Store | None:
    """``"database"`` or ``"redis"`` when ``exc`` means that store cannot answer now,
    else None (a bug, or not a store's error at all)."""
    if _database_unavailable(exc):
        return "database"
    if _redis_unavailable(exc):
        return "redis"
    return None


def describe_failure(exc: BaseException) -> str:
    """One short line about a store failure, for the log: the driver's own error (not
    SQLAlchemy's wrapper with its statement and parameters, which may hold a job's
    result), its first line only."""
    cause = getattr(exc, "orig", None) or exc
    text = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {text[:200]}" if text else type(cause).__name__
