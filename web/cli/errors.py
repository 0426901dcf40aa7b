"""What ends a command early: :class:`CommandFailed`, printed by :mod:`web.cli.main` as
one line on stderr, its ``exit_code`` the process's."""

from __future__ import annotations

#: A command that could not do what was asked (the server refused, or cannot be reached).
EXIT_FAILED = 1
#: ``download --wait``: the job ended, but failed or was cancelled.
EXIT_JOB_FAILED = 2
#: Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """A failure to report in one line (``str(self)``), then exit with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
