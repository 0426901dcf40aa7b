"""Errors a media function raises, each saying whether trying again could help."""

from __future__ import annotations

from typing import Any


class MediaError(Exception):
    """A media step failed.

    Parameters:
      message: a reason a person can read.
      code: a short machine name (``unsupported_url``, ``not_found``, ...).
      retryable: whether the same step may succeed later (network, 5xx, timeouts).
    """

    def __init__(self, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors don't survive the default pickling of exceptions,
        # and these cross a process boundary (media.isolation).
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[MediaError], args: tuple[Any, ...], state: dict[str, Any]) -> MediaError:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class UrlRejected(MediaError):
    """A URL we refuse to fetch (scheme, length, private address)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_url", retryable=False)


class NotMedia(MediaError):
    """A file that FFmpeg cannot read as audio or video."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_media", retryable=False)


class Cancelled(MediaError):
    """The caller asked the step to stop."""

    def __init__(self) -> None:
        super().__init__("cancelled", code="cancelled", retryable=False)


class BadRequest(MediaError):
    """A parameter of a media request that cannot be honoured (``field`` names it)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, code="bad_" + field, retryable=False)
        self.field = field
