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
    from db.settings import _database_url

    base = _database_url(os.environ["TEST_DATABASE_URL"], tmp_path)
    schema = f"vf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
