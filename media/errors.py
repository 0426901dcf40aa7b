"""Errors a media function raises, each saying whether trying again could help."""

from __future__ import annotations


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
