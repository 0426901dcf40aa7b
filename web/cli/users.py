"""``vidfleet user add|list|passwd|remove``: the people who sign in, in the database.

These commands use the database directly, through the servers' settings
(``DATABASE_URL``, else the SQLite file under ``VIDFLEET_DATA_DIR``): run them where
those are set, e.g. to make the first admin before anyone can sign in. A password is
read with a prompt (twice, not echoed), or as one line of stdin with
``--password-stdin`` for scripts. The web processes see a changed password or a
removed user within a few seconds (web/credentials.py).
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from web.cli.errors import CommandFailed
from web.cli.output import age, clean, table


def add_commands(subparsers: Any) -> None:
    user = subparsers.add_parser(
        "user", help="add, list, change or remove users (uses the database directly)"
    )
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a user who signs in with a password")
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--role", choices=("admin", "viewer"), default="viewer", help="default: viewer"
    )
    _password_option(add)
    add.set_defaults(func=add_user)

    listing = actions.add_parser("list", help="the users and their roles")
    listing.set_defaults(func=list_users)

    passwd = actions.add_parser("passwd", help="set a user's password; the user's sessions end")
    passwd.add_argument("name", metavar="NAME")
    _password_option(passwd)
    passwd.set_defaults(func=change_password)

    remove = actions.add_parser(
        "remove", help="remove a user: its sessions and API tokens stop working"
    )
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=remove_user)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line of stdin instead of prompting",
    )


@contextmanager
def _database() -> Iterator[Any]:
    # Imported here: the HTTP commands need neither SQLAlchemy nor argon2.
    from db.engine import make_engine
    from db.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.database_url, connect_timeout=settings.db_connect_timeout)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _password(args: argparse.Namespace) -> str:
    from db import users

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CommandFailed("the passwords do not match")
    try:
        return users.checked_password(password)
    except users.InvalidInput as exc:
        raise CommandFailed(str(exc)) from None


def _checked_name(name: str) -> str:
    from db import users

    try:
        return users.checked_name(name)
    except users.InvalidInput as exc:
        raise CommandFailed(str(exc)) from None


def _existing(connection: Any, name: str) -> Any:
    from db import users

    user = users.find_user(connection, name)
    if user is None:
        raise CommandFailed(f"there is no user {clean(name, 100)!r}")
    return user


def add_user(args: argparse.Namespace) -> int:
    from db import users
    from db.models import Role

    name = _checked_name(args.name)
    password_hash = users.hash_password(_password(args))
    with _database() as connection:
        try:
            user = users.add_user(
                connection, name=name, role=Role(args.role), password_hash=password_hash
            )
        except users.UserExists:
            raise CommandFailed(f"a user named {clean(name, 100)!r} already exists") from None
    print(f"user {user.id} {clean(user.name, 100)} added ({user.role})")
    return 0


def list_users(args: argparse.Namespace) -> int:
    from db import users

    with _database() as connection:
        items = users.list_users(connection)
    if not items:
        print("no users")
        return 0
    rows = [
        [
            str(item["id"]),
            clean(item["role"], 10),
            age(item["created_at"]),
            clean(item["name"], 100),
        ]
        for item in items
    ]
    width = shutil.get_terminal_size((120, 24)).columns
    print(table(["ID", "ROLE", "AGE", "NAME"], rows, width))
    return 0


def change_password(args: argparse.Namespace) -> int:
    from db import users

    with _database() as connection:
        user = _existing(connection, args.name)
        password_hash = users.hash_password(_password(args))
        users.set_password(connection, user.id, password_hash)
    print(f"password of {clean(user.name, 100)} changed; its sessions have ended")
    return 0


def remove_user(args: argparse.Namespace) -> int:
    from db import users

    with _database() as connection:
        user = _existing(connection, args.name)
        users.remove_user(connection, user.id)
    print(f"user {clean(user.name, 100)} removed, with its API tokens")
    return 0
