"""The databases the job tests run on: SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set (CI sets it where a server answers)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from db.migrate import upgrade

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@contextmanager
def migrated_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a freshly migrated database: a SQLite file, or a PostgreSQL schema of
    its own (dropped afterwards)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        upgrade(url)
        yield url
        return
    with postgres_schema(os.environ["TEST_DATABASE_URL"]) as url:
        upgrade(url)
        yield url


@contextmanager
def postgres_schema(server_url: str, *, prefix: str = "vf_test") -> Iterator[str]:
    """The URL of an empty schema of its own (``<prefix>_<random>``, dropped afterwards)
    on the PostgreSQL at ``server_url``: every connection made from it has that schema
    as its ``search_path``, so parallel test processes never share tables."""
    from db.settings import _database_url

    base = _database_url(server_url, Path("."))
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
