"""A client of MusicBrainz's web service (or any server that speaks its ``/ws/2`` API):
find an artist by name, decide which one is meant, and read what the library shows of it.

:meth:`MusicBrainz.enrich` searches (``/ws/2/artist?query=...&fmt=json``) and picks
(:func:`pick`): the candidate with the best ``score`` (0-100), if it reaches
:data:`MIN_SCORE` and is at least :data:`MARGIN` ahead of the next one. Otherwise the
name is ``ambiguous`` (several candidates close together) or ``not_found`` (none good
enough), with the candidates kept for a person to choose: never a silent guess. For a
match it looks the MBID up (``inc=tags+genres+url-rels``) for the disambiguation,
country, begin year, genres (by votes; the top tags where MusicBrainz has no genres) and
an image URL (:func:`image_url`).

Each request runs inside ``pace()``, the caller's turn-taking (MusicBrainz allows one
request a second per client; the workers share one turn through Redis). A ``503`` (its
answer to going too fast), ``429``, another ``5xx``, a timeout or a dropped connection is
tried again after ``Retry-After`` (seconds or an HTTP date) or an exponential backoff,
until the next wait would take the whole exchange past ``max_wait``: then
:class:`MusicBrainzUnavailable` (retryable). Malformed JSON, an answer of the wrong
shape, a ``404`` and other refusals are a :class:`MusicBrainzError` with a readable
reason (not retryable). Answers are capped at :data:`MAX_ANSWER_BYTES` and each request
at ``timeout`` seconds in all.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from media.errors import MediaError

DEFAULT_URL = "https://musicbrainz.org"
#: The least score a candidate needs to be taken.
MIN_SCORE = 90
#: How far ahead of the next candidate the best one must be.
MARGIN = 10
#: Candidates asked for, and kept with an enrichment.
SEARCH_LIMIT = 10
KEPT_CANDIDATES = 5
#: Genres (or tags) kept per artist.
MAX_GENRES = 10
TIMEOUT_S = 10.0
#: The longest one call may spend retrying a busy or unreachable server.
MAX_WAIT_S = 60.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 16.0
MAX_ANSWER_BYTES = 2 * 1024**2
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The width asked of Wikimedia Commons for an artist's picture (the largest set size).
COMMONS_WIDTH = 1024
_YEAR = re.compile(r"([0-9]{4})(?:-[0-9]{2}){0,2}")


class MusicBrainzError(MediaError):
    """MusicBrainz answered, but not with what was asked for (not retryable)."""

    def __init__(self, message: str, *, code: str = "musicbrainz_bad_answer") -> None:
        super().__init__(message, code=code, retryable=False)


class MusicBrainzUnavailable(MediaError):
    """MusicBrainz stayed busy or unreachable for as long as a call may wait."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="musicbrainz_unavailable", retryable=True)


@dataclass(frozen=True)
class Candidate:
    mbid: str
    name: str
    score: int
    disambiguation: str | None = None
    country: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtistFacts:
    """What a lookup of one MBID found."""

    mbid: str
    name: str
    disambiguation: str | None
    country: str | None
    begin_year: int | None
    genres: list[str]
    image_url: str | None


@dataclass(frozen=True)
class Enrichment:
    """The outcome for one name: ``matched`` (with ``facts``), ``ambiguous`` or
    ``not_found``, and the best candidates the search gave."""

    status: str
    candidates: list[Candidate] = field(default_factory=list)
    facts: ArtistFacts | None = None


def user_agent(version: str, contact: str) -> str:
    """``vidfleet/<version> ( <contact> )``, the form MusicBrainz asks clients to send."""
    return f"vidfleet/{version} ( {contact} )" if contact else f"vidfleet/{version}"


def pick(candidates: list[Candidate]) -> tuple[str, Candidate | None]:
    """``("matched", best)`` when the best score reaches :data:`MIN_SCORE` and is
    :data:`MARGIN` ahead of the next; else ``("ambiguous", None)`` or, when none reaches
    it, ``("not_found", None)``. ``candidates`` best first."""
    if not candidates or candidates[0].score < MIN_SCORE:
        return "not_found", None
    if len(candidates) > 1 and candidates[0].score - candidates[1].score < MARGIN:
        return "ambiguous", None
    return "matched", candidates[0]


def image_url(relations: Any) -> str | None:
    """The artist's picture among its URL relations: the first ``image`` relation to an
    http(s) URL. A Wikimedia Commons file page (``/wiki/File:<name>``, what MusicBrainz
    usually links) becomes its ``Special:FilePath`` at :data:`COMMONS_WIDTH` pixels,
    which redirects to the picture itself; any other URL is taken as it is (what it
    serves is checked before it is used)."""
    for relation in relations if isinstance(relations, list) else []:
        if not isinstance(relation, dict) or relation.get("type") != "image":
            continue
        resource = (relation.get("url") or {}).get("resource")
        if not isinstance(resource, str):
            continue
        parts = urlsplit(resource)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        if parts.hostname == "commons.wikimedia.org" and parts.path.startswith("/wiki/File:"):
            name = quote(unquote(parts.path.removeprefix("/wiki/File:")))
            return (
                f"https://commons.wikimedia.org/wiki/Special:FilePath/{name}?width={COMMONS_WIDTH}"
            )
        return resource
    return None


class _TooSlow(Exception):
    """An answer still arriving when its time was up."""


class MusicBrainz:
    """A client of one MusicBrainz server.

    Parameters:
      base_url: the server (``https://musicbrainz.org``); ``/ws/2/...`` is appended.
      user_agent: what to call ourselves (:func:`user_agent`).
      pace: a context manager factory each request runs inside (turn-taking).
      sleep: waits before a retry (a caller may make it cancellable).
      timeout: seconds one request may take in all.
      max_wait: seconds one call may spend retrying.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        user_agent: str,
        pace: Callable[[], AbstractContextManager[object]] = nullcontext,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = TIMEOUT_S,
        max_wait: float = MAX_WAIT_S,
    ) -> None:
        self._pace = pace
        self._sleep = sleep
        self._timeout = timeout
        self._max_wait = max_wait
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/ws/2/",
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
        )

    def __enter__(self) -> MusicBrainz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def enrich(self, name: str) -> Enrichment:
        """Search ``name``, pick, and look a match up.

        Raises:
          MusicBrainzError: a malformed or refused answer.
          MusicBrainzUnavailable: the server stayed busy or unreachable.
        """
        candidates = self.search(name)
        status, best = pick(candidates)
        kept = candidates[:KEPT_CANDIDATES]
        if best is None:
            return Enrichment(status=status, candidates=kept)
        return Enrichment(status=status, candidates=kept, facts=self.lookup(best.mbid))

    def search(self, name: str) -> list[Candidate]:
        """Artists whose name or alias is ``name``, best score first."""
        # A phrase on the default fields (name, sort name, aliases); inside quotes only
        # the quote and the backslash are special to Lucene.
        phrase = name.replace("\\", "\\\\").replace('"', '\\"')
        answer = self._get("artist", {"query": f'"{phrase}"', "limit": SEARCH_LIMIT})
        artists = answer.get("artists")
        if not isinstance(artists, list):
            raise MusicBrainzError("MusicBrainz's search answer has no list of artists")
        found = [c for c in (_candidate(a) for a in artists) if c is not None]
        return sorted(found, key=lambda c: -c.score)  # stable: the server's order in ties

    def lookup(self, mbid: str) -> ArtistFacts:
        """The artist ``mbid`` with its tags, genres and URL relations."""
        mbid = _mbid(mbid) or ""
        if not mbid:
            raise MusicBrainzError("not an MBID")
        # Spaces go out as "+", the separator MusicBrainz documents.
        answer = self._get(f"artist/{mbid}", {"inc": "tags genres url-rels"})
        name = answer.get("name")
        if not isinstance(name, str):
            raise MusicBrainzError(f"MusicBrainz's answer for artist {mbid} has no name")
        life_span = answer.get("life-span")
        begin = life_span.get("begin") if isinstance(life_span, dict) else None
        year = _YEAR.fullmatch(begin) if isinstance(begin, str) else None
        return ArtistFacts(
            mbid=_mbid(answer.get("id")) or mbid,  # a merged MBID answers as its new one
            name=name,
            disambiguation=_text(answer.get("disambiguation")),
            country=_text(answer.get("country"), 8),
            begin_year=int(year.group(1)) if year else None,
            genres=_genres(answer.get("genres")) or _genres(answer.get("tags")),
            image_url=image_url(answer.get("relations")),
        )

    # -- one request, tried again while the server is busy

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        params = {**params, "fmt": "json"}
        started = time.monotonic()
        backoff = FIRST_BACKOFF_S
        while True:
            wait = backoff
            try:
                with self._pace():
                    status, body, retry_after = self._exchange(path, params)
            except (httpx.TransportError, _TooSlow) as exc:
                problem = f"MusicBrainz did not answer ({exc or type(exc).__name__})"
            else:
                if status == httpx.codes.OK:
                    return _decode(body)
                if status not in RETRY_STATUSES:
                    raise _refusal(status, body, path)
                problem = f"MusicBrainz is busy ({status} {httpx.codes.get_reason_phrase(status)})"
                wait = backoff if retry_after is None else retry_after
            spent = time.monotonic() - started
            if spent + wait > self._max_wait:
                raise MusicBrainzUnavailable(f"{problem}; gave up after {spent:.0f} s")
            self._sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _exchange(self, path: str, params: dict[str, Any]) -> tuple[int, bytes, float | None]:
        """One request: its status, body (at most MAX_ANSWER_BYTES) and Retry-After."""
        deadline = time.monotonic() + self._timeout
        with self._client.stream("GET", path, params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise MusicBrainzError(
                        f"MusicBrainz's answer is larger than {MAX_ANSWER_BYTES // 1024**2} MB"
                    )
                if time.monotonic() > deadline:
                    raise _TooSlow(f"the answer took more than {self._timeout:g} s")
            return response.status_code, bytes(body), _retry_after(response.headers)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MusicBrainzError(f"MusicBrainz answered with malformed JSON ({exc})") from None
    if not isinstance(answer, dict):
        raise MusicBrainzError("MusicBrainz answered with JSON that is not an object")
    return answer


def _refusal(status: int, body: bytes, path: str) -> MusicBrainzError:
    reason = f"{status} {httpx.codes.get_reason_phrase(status)}".strip()
    try:
        said = json.loads(body).get("error")
    except (ValueError, AttributeError):
        said = None
    detail = f": {_text(said, 200)}" if isinstance(said, str) and said else ""
    if status == httpx.codes.NOT_FOUND:
        what = "artist" if path.startswith("artist/") else "search"
        return MusicBrainzError(
            f"MusicBrainz has no such {what} ({reason}{detail})", code="musicbrainz_not_found"
        )
    return MusicBrainzError(f"MusicBrainz refused the request ({reason}{detail})")


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # "²".isdigit() too, and int() refuses it
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _mbid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) and len(value) == 36 else None
    except ValueError:
        return None


def _text(value: Any, limit: int = 500) -> str | None:
    """A string field of an answer, stripped, cut to ``limit``; None when empty."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:limit]


def _candidate(artist: Any) -> Candidate | None:
    """A search hit, or None when it lacks an MBID, a name or a score."""
    if not isinstance(artist, dict):
        return None
    mbid, name, score = _mbid(artist.get("id")), _text(artist.get("name"), 300), artist.get("score")
    if (
        isinstance(score, str) and score.isascii() and score.isdigit()
    ):  # older servers send it as a string
        score = int(score)
    if mbid is None or name is None or type(score) is not int:
        return None
    return Candidate(
        mbid=mbid,
        name=name,
        score=max(0, min(100, score)),
        disambiguation=_text(artist.get("disambiguation")),
        country=_text(artist.get("country"), 8),
    )


def _genres(entries: Any) -> list[str]:
    """Names by votes (most first), those with a positive count, at most MAX_GENRES."""
    voted = [
        (entry["count"], name)
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        and type(entry.get("count")) is int
        and entry["count"] > 0
        and (name := _text(entry.get("name"), 100))
    ]
    ordered = sorted(voted, key=lambda pair: -pair[0])
    return list(dict.fromkeys(name for _, name in ordered))[:MAX_GENRES]
