"""The db tests' shared fixture: a migrated database of each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.engine import make_engine
from tests.db.databases import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of its own: SQLite, and PostgreSQL when the tests have one."""
    with migrated_database(request.param, tmp_path) as url:
        made = make_engine(url)
        yield made
        made.dispose()
