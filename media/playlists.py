"""Lists a playlist's or channel's entries with yt-dlp's flat extraction, downloading
nothing.

``extract_flat="in_playlist"``: yt-dlp reads the playlist's page or feed (and follows a
URL that an extractor hands on to another) but takes each entry as it is listed, without
visiting it. Run it like a download, in a child process under the egress guard
(:mod:`media.isolation`, :mod:`media.egress`): the listing's own connections are held
to the same addresses as a download's.

An entry is only a URL someone else wrote, so each one is checked as a URL a person
pasted would be (:func:`media.urls.check_url`: http/https, and a host that resolves to
public addresses unless ``allow_private``); a refused entry is listed with its reason
and never downloaded. Its download is guarded again on every connection it makes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from yt_dlp.utils import DownloadError, unsmuggle_url

from media.download import QuietLogger, classify_error, clean_error
from media.egress import BlockedAddress, refusals
from media.errors import MediaError, UrlRejected
from media.urls import MAX_URL_LENGTH, check_url, parse_url
from media.ytdl_setup import youtube_dl

logger = logging.getLogger(__name__)

MAX_SOURCE_ID = 256
MAX_TITLE = 500


@dataclass(frozen=True)
class ListedEntry:
    """One entry as the playlist lists it.

    Parameters:
      url: what a download of the entry fetches.
      source_id: the site's id of the video, when the listing gives one.
      refused: why a download may not fetch ``url`` (None: it may).
    """

    url: str
    source_id: str | None
    title: str | None
    refused: str | None = None


@dataclass(frozen=True)
class PlaylistListing:
    """A playlist's entries in its order, each URL once.

    Parameters:
      truncated: the playlist has more than the ``max_entries`` listed.
    """

    title: str | None
    entries: list[ListedEntry]
    truncated: bool


class _UrlVerdicts:
    """:func:`media.urls.check_url` of each entry, resolving each host once (a channel
    of thousands of entries lists a handful of hosts)."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._by_host: dict[str, str | None] = {}

    def refusal(self, url: str) -> str | None:
        try:
            url = parse_url(url)
        except UrlRejected as exc:
            return exc.message
        host = (urlsplit(url).hostname or "").lower()
        if host not in self._by_host:
            try:
                check_url(url, allow_private=self.allow_private)
                self._by_host[host] = None
            except UrlRejected as exc:
                self._by_host[host] = exc.message
        return self._by_host[host]


def _storable(text: str) -> str:
    """``text`` without what a database cannot store (NUL, lone surrogates)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return _storable(value)[:limit] or None


def _entry(raw: Any, verdicts: _UrlVerdicts) -> ListedEntry | None:
    """The entry a flat listing gives as ``raw``; None for one without a URL."""
    if not isinstance(raw, dict):
        return None
    url = raw.get("url") or raw.get("webpage_url")
    if not isinstance(url, str) or not url:
        return None
    # An RSS item's guid travels smuggled in its URL's fragment: it is the entry's id.
    url, smuggled = unsmuggle_url(url, {})
    if len(url) > MAX_URL_LENGTH or _storable(url) != url:
        return None  # not a URL anything could fetch, nor one a row can keep
    source_id = smuggled.get("force_videoid") or raw.get("id")
    source_id = _text(str(source_id), MAX_SOURCE_ID) if isinstance(source_id, str | int) else None
    return ListedEntry(
        url=url,
        source_id=source_id,
        title=_text(raw.get("title"), MAX_TITLE),
        refused=verdicts.refusal(url),
    )


def list_playlist(
    url: str, *, allow_generic: bool, allow_private: bool, max_entries: int
) -> PlaylistListing:
    """The entries of the playlist at ``url``, at most ``max_entries`` of them.

    Parameters:
      allow_generic: let yt-dlp's generic extractor read pages and feeds no site
        extractor knows.
      allow_private: entries may point at hosts that are not public.

    Raises:
      BlockedAddress: the listing tried to connect where the egress guard refused.
      MediaError: yt-dlp could not list the URL (``retryable`` says whether trying
        again may help), or the URL is one video, not a playlist (``not_playlist``).
    """
    options: dict[str, Any] = {
        "extract_flat": "in_playlist",
        "lazy_playlist": True,
        # One more than wanted: whether the playlist goes on past the cap.
        "playlistend": max_entries + 1,
        "allowed_extractors": ["default"] if allow_generic else ["default", "-generic"],
        "logger": QuietLogger(logger),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "never", "stderr": "never"},
        "socket_timeout": 30,
        "retries": 3,
        "usenetrc": False,
        "cachedir": False,
    }
    try:
        with youtube_dl(options) as ydl:
            info = ydl.extract_info(url, download=False)
    except DownloadError as exc:
        if refusals():
            raise BlockedAddress() from None
        raise classify_error(clean_error(exc)) from None
    if refusals():
        raise BlockedAddress()
    if not info:
        raise MediaError("yt-dlp returned nothing for this URL", code="empty", retryable=False)
    if info.get("_type") not in ("playlist", "multi_video"):
        raise MediaError(
            "this URL is one video, not a playlist or channel",
            code="not_playlist",
            retryable=False,
        )
    verdicts = _UrlVerdicts(allow_private=allow_private)
    raw_entries = list(islice(info.get("entries") or (), max_entries + 1))
    entries: list[ListedEntry] = []
    seen: set[str] = set()
    for raw in raw_entries[:max_entries]:
        entry = _entry(raw, verdicts)
        if entry is not None and entry.url not in seen:
            seen.add(entry.url)
            entries.append(entry)
    return PlaylistListing(
        title=_text(info.get("title"), MAX_TITLE),
        entries=entries,
        truncated=len(raw_entries) > max_entries,
    )
