"""``vidfleet migrate``: upgrade the database to the latest migration, as the
Procfile's ``release`` step does, and print the revisions it went from and to.

It uses the database directly, through the servers' settings (``DATABASE_URL``, else
the SQLite file under ``VIDFLEET_DATA_DIR``); run it where those are set.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="upgrade the database (DATABASE_URL) to the latest migration",
        description="Upgrade the database named by the settings (DATABASE_URL, else "
        "SQLite under VIDFLEET_DATA_DIR) to the latest migration.",
    )
    parser.set_defaults(func=migrate)


def migrate(args: argparse.Namespace) -> int:
    # Imported here: the HTTP commands need neither SQLAlchemy nor Alembic.
    from db.migrate import describe_upgrade, upgrade
    from db.settings import get_settings

    print(describe_upgrade(*upgrade(get_settings().database_url)))
    return 0
