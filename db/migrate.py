"""Alembic, configured in code: ``python -m db.migrate`` upgrades to head.

The Procfile's ``release`` process and ``make run`` call this; tests call
:func:`upgrade` on their own database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from db.engine import make_engine
from db.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def main() -> None:
    upgrade(get_settings().database_url)
    print("vidfleet: database is at the latest migration")


if __name__ == "__main__":
    main()
