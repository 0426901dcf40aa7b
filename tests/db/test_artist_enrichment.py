"""Migration 0007 on a real database (SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set): an artist keeps what enrichment found, JSON and all, and
the migration goes down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from db.engine import make_engine, session_factory
from db.migrate import alembic_config, upgrade
from db.models import Artist
from tests.db.databases import BACKENDS, migrated_database

COLUMNS = {"mbid", "disambiguation", "country", "begin_year", "genres", "image_url", "enrichment"}


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with migrated_database(request.param, tmp_path) as url:
        yield url


def artist_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("artists")}
    finally:
        engine.dispose()


def test_an_artist_keeps_what_enrichment_found(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    enrichment = {
        "status": "ambiguous", "at": "2026-12-20T12:00:00+00:00", "job": "j",
        "candidates": [{"mbid": "5b11f4ce-a62d-471e-81fc-a69a8278c7da", "name": "Nirvana",
                        "score": 100, "disambiguation": "ünïcode", "country": "US"}],
    }  # fmt: skip
    with sessions.begin() as session:
        session.add(Artist(name="Nirvana", mbid="5b11f4ce-a62d-471e-81fc-a69a8278c7da",
                           disambiguation="US grunge band", country="US", begin_year=1987,
                           genres=["grunge", "rock"], image_url="https://example.com/n.jpg",
                           enrichment=enrichment))  # fmt: skip
        session.add(Artist(name="Unknown"))
    with sessions() as session:
        known = session.query(Artist).filter_by(name="Nirvana").one()
        unknown = session.query(Artist).filter_by(name="Unknown").one()
        assert (known.begin_year, known.genres, known.enrichment) == (
            1987,
            ["grunge", "rock"],
            enrichment,
        )
        assert (unknown.mbid, unknown.genres, unknown.enrichment) == (None, None, None)
    engine.dispose()


def test_the_migration_goes_down_and_up_again(database_url: str) -> None:
    assert artist_columns(database_url) >= COLUMNS
    engine = make_engine(database_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    engine.dispose()
    assert not COLUMNS & artist_columns(database_url)
    assert "image_version" in artist_columns(database_url)  # 0004's own columns stay
    upgrade(database_url)
    assert artist_columns(database_url) >= COLUMNS
