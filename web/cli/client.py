"""The HTTP side of the commands: where the API is, which token to send, and what a
failure becomes.

The server is ``--url`` or ``VIDFLEET_URL`` (``http://127.0.0.1:8000`` by default,
http or https only); the token is ``VIDFLEET_TOKEN``, or ``--token``, which other
users of the machine can read in ``ps``, so it is warned about. The token is sent as
``Authorization: Bearer`` and never printed. An API error (``{"error": {...}}``)
becomes one line on stderr and exit status 1 (:class:`ApiFailure`); a server that
cannot be reached, or does not answer in time, is :class:`Unreachable`; a 401 comes
with a hint about ``VIDFLEET_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

from web.cli.errors import CommandFailed
from web.cli.output import clean

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "VIDFLEET_URL"
TOKEN_VARIABLE = "VIDFLEET_TOKEN"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
#: What a bearer token may hold (the server takes at most 512 characters): printable
#: ASCII without spaces, so it cannot break out of its header.
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


class ApiFailure(CommandFailed):
    """The server answered with an error: its ``status``, ``code`` and whole ``error``."""

    def __init__(self, message: str, *, status: int, code: str, error: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.error = error


class Unreachable(CommandFailed):
    """No answer: the server refused the connection, timed out or could not be found."""


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token``, for every command that talks to the API."""
    parser.add_argument(
        "--url",
        metavar="SERVER",
        help=f"the vidfleet server (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"an admin, viewer or API token; prefer ${TOKEN_VARIABLE}: "
        "a command line is visible to every user of the machine (ps)",
    )


def server_url(raw: str) -> str:
    """The server's base URL, without a trailing slash.

    Raises:
      CommandFailed: not an http(s) URL of a host, or one with a user, query or fragment.
    """
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 (parsing it raises on a bad port)
    except ValueError:
        raise CommandFailed(f"the server URL {clean(raw)!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandFailed(
            f"the server URL must be http:// or https:// and name a host, not {clean(raw)!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise CommandFailed(f"put the token in ${TOKEN_VARIABLE}, not in the server URL")
    if parts.query or parts.fragment:
        raise CommandFailed("the server URL takes no query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def token_from(args: argparse.Namespace) -> str | None:
    """``--token`` (with a warning: it shows in ``ps``) or ``$VIDFLEET_TOKEN``; None
    when neither is set.

    Raises:
      CommandFailed: a token that no server would take.
    """
    token = getattr(args, "token", None)
    if token is not None:
        print(
            f"vidfleet: warning: --token is visible to other users of this machine (ps); "
            f"set ${TOKEN_VARIABLE} instead",
            file=sys.stderr,
        )
    else:
        token = os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and not _TOKEN.fullmatch(token.strip()):
        raise CommandFailed("the token must be 1 to 512 printable ASCII characters without spaces")
    return token.strip() if token is not None else None


class Api:
    """One server and token: requests that return the answer's JSON or raise a
    :class:`CommandFailed` fit to print."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.token = token
        self.auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url,
            headers={**self.auth_headers, "Accept": "application/json"},
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,  # a redirect would carry the token elsewhere
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Api:
        url = getattr(args, "url", None) or os.environ.get(URL_VARIABLE) or DEFAULT_URL
        return cls(server_url(url), token_from(args))

    @property
    def ws_url(self) -> str:
        """The WebSocket ``/ws`` of the same server (``ws://`` or ``wss://``)."""
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """The status and JSON of a 2xx answer.

        Raises:
          ApiFailure: a 4xx or 5xx (or an answer that is not JSON).
          Unreachable: no answer.
        """
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise Unreachable(
                f"{self.base_url} did not answer in time (connect {CONNECT_TIMEOUT_S:g} s, "
                f"read {READ_TIMEOUT_S:g} s)"
            ) from None
        except httpx.ConnectError as exc:
            raise Unreachable(
                f"cannot reach {self.base_url}: {clean(exc, 200)} "
                f"(is the server running? set --url or ${URL_VARIABLE})"
            ) from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"no answer from {self.base_url}: {clean(exc, 200)}") from None
        if response.is_success:
            try:
                return response.status_code, response.json()
            except ValueError:
                raise ApiFailure(
                    f"{self.base_url} answered {method} {path} with something that is not JSON; "
                    "is it a vidfleet server?",
                    status=response.status_code,
                    code="not_json",
                    error={},
                ) from None
        raise self.failure(response)

    def failure(self, response: httpx.Response) -> ApiFailure:
        """The one-line report of an error answer."""
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            error, code = {}, "http_error"
            message = f"{response.reason_phrase or 'error'} (not a vidfleet API error)"
        status = response.status_code
        text = f"{clean(message)} ({status} {clean(code, 60)}"
        field = error.get("field") if isinstance(error, dict) else None
        text += f", field {clean(field, 60)})" if field else ")"
        if status == httpx.codes.UNAUTHORIZED:
            text += (
                f"; set ${TOKEN_VARIABLE} to an admin, viewer or API token"
                if self.token is None
                else f"; the server refused the token: check ${TOKEN_VARIABLE} (or --token)"
            )
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            text += f"; try again in {retry_after} s"
        return ApiFailure(text, status=status, code=code, error=error)

    def get(self, path: str, **params: Any) -> Any:
        """The JSON of ``GET path``; ``params`` that are None are left out."""
        kept = {name: value for name, value in params.items() if value is not None}
        return self.request("GET", path, params=kept)[1]

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {})[1]

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)[1]
