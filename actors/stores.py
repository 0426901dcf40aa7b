"""The database engine, sessions and Redis client of this worker process, made on first
use (after Dramatiq has forked its worker processes, so none shares a connection)."""

from __future__ import annotations

from functools import lru_cache

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from db import live
from db.engine import make_engine, session_factory
from db.settings import get_settings


@lru_cache(maxsize=1)
def engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def sessions() -> sessionmaker:
    return session_factory(engine())


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return live.sync_client(get_settings().redis_url)
