"""Checks a URL a person pasted before anything fetches it (DESIGN §7).

This is the early, friendly check (a 400 naming the field). It is not what keeps a
download away from internal addresses: redirects, later resolutions and extractor URLs
are only seen by the egress guard in the download's own process (:mod:`media.egress`).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from media.egress import is_public_address
from media.errors import UrlRejected

MAX_URL_LENGTH = 2048


def parse_url(url: object) -> str:
    """Return the URL, stripped, if its form is one we fetch (no DNS).

    Raises:
      UrlRejected: not a string, empty, too long, not http(s), or no host.
    """
    if not isinstance(url, str):
        raise UrlRejected("url must be a string")
    url = url.strip()
    if not url:
        raise UrlRejected("url is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or 0x7F <= ord(c) < 0xA0 for c in url):
        raise UrlRejected("url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError as exc:
        raise UrlRejected(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRejected("only http and https URLs can be downloaded")
    if not parts.hostname:
        raise UrlRejected("url has no host")
    return url


def check_url(url: object, *, allow_private: bool) -> str:
    """:func:`parse_url`, then resolve the host (blocking DNS: call it from a thread in
    async code).

    Raises:
      UrlRejected: what :func:`parse_url` raises; a host that does not resolve, or one
        that resolves to an address that is not public while ``allow_private`` is false.
    """
    url = parse_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        raise UrlRejected(f"host {host!r} does not resolve") from None
    if not allow_private and not all(is_public_address(str(info[4][0])) for info in infos):
        raise UrlRejected(
            f"host {host!r} is a private, loopback, link-local or otherwise non-public address"
        )
    return url
