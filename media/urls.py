"""Checks a URL a person pasted before anything fetches it (DESIGN §7)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from media.errors import UrlRejected

MAX_URL_LENGTH = 2048


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: object, *, allow_private: bool) -> str:
    """Return the URL, stripped, if we may fetch it.

    Resolves the host (blocking DNS: call it from a thread in async code).

    Raises:
      UrlRejected: not a string, empty, too long, not http(s), no host, a host that
        does not resolve, or one that resolves to a private/loopback/link-local
        address while ``allow_private`` is false.
    """
    if not isinstance(url, str):
        raise UrlRejected("url must be a string")
    url = url.strip()
    if not url:
        raise UrlRejected("url is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 for c in url):
        raise UrlRejected("url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRejected("only http and https URLs can be downloaded")
    host = parts.hostname
    if not host:
        raise UrlRejected("url has no host")
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UrlRejected(f"host {host!r} does not resolve") from None
    if not allow_private and any(_is_private(str(info[4][0])) for info in infos):
        raise UrlRejected(f"host {host!r} is a private, loopback or link-local address")
    return url
