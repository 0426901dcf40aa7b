"""``vidfleet``: the command line.

Each module in :data:`COMMAND_MODULES` adds its subcommands to the parser through
``add_commands(subparsers)``; a subcommand's parser carries its handler as
``func(args) -> int`` (the exit code), or raises :class:`~web.cli.errors.CommandFailed`,
printed here as one line on stderr. The commands that talk to the HTTP API take
``--url`` (``VIDFLEET_URL``) and ``--token`` (``VIDFLEET_TOKEN``); the user and migrate
commands use the database directly, through the same settings as the servers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from web.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, CommandFailed

COMMAND_MODULES: tuple[str, ...] = (
    "web.cli.downloads",
    "web.cli.jobs",
    "web.cli.library",
    "web.cli.tokens",
    "web.cli.users",
    "web.cli.migrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidfleet", description="vidfleet: a self-hosted media engine for music videos."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandFailed as failure:
        print(f"vidfleet: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read stdout stopped (`vidfleet jobs | head`): no traceback, and
        # nothing more for Python to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
