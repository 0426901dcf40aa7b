"""Alembic, configured in code: ``python -m db.migrate`` upgrades to head.

The Procfile's ``release`` process, ``make run`` and ``vidfleet migrate`` call this;
tests call :func:`upgrade` on their own database. :func:`upgrade` answers the revision
the database was at and the one it is at now (None: no schema yet).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from db.engine import make_engine
from db.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    """The database's revision (heads joined by commas), None before the first migration."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(heads) if heads else None


def upgrade(database_url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; answers ``(the revision before, the revision after)``."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            before = current_revision(connection)
            command.upgrade(alembic_config(connection), revision)
            return before, current_revision(connection)
    finally:
        engine.dispose()


def describe_upgrade(before: str | None, after: str | None) -> str:
    """One line on what :func:`upgrade` did."""
    if before == after:
        return f"the database is already at the latest migration ({after})"
    return f"the database was upgraded from {before or 'an empty database'} to {after}"


def main() -> None:
    print(f"vidfleet: {describe_upgrade(*upgrade(get_settings().database_url))}")


if __name__ == "__main__":
    main()
