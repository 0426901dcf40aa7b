"""NFO files: the XML documents Kodi and Jellyfin read beside a music video
(``<musicvideo>``) and in an artist's folder (``<artist>``).

The tags are those of Kodi's wiki (https://kodi.wiki/view/NFO_files/Music_videos and
https://kodi.wiki/view/NFO_files/Music), which Jellyfin reads too, plus two:

- ``<uniqueid type="<extractor>" default="true">``: not in the music-video table, but
  read for every kind of video by Kodi's NFO parser (``CVideoInfoTag::ParseNative``)
  and written by its own exporter, and read by Jellyfin as a provider id. It is what
  matches a file to its source whatever its name.
- ``<sourceurl>``, ours: the page the video was downloaded from. No documented tag
  means that: ``<trailer>`` would be offered as the video's trailer (Kodi plays it,
  Jellyfin takes only YouTube add-on URLs there), and ``<source>`` is already
  tinyMediaManager's (the media's origin: BluRay, WEB-DL...). Both servers ignore a tag
  they do not know.

The documents are built with :mod:`xml.etree.ElementTree`, which escapes text and
attributes; what XML 1.0 cannot hold at all (control characters other than tab and
newline, lone surrogates, U+FFFE/U+FFFF) is removed first, and so are the
bidirectional overrides and isolates that can make a title display as something else.
UTF-8, with an XML declaration.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

#: What XML 1.0 cannot hold (its ``Char`` production), plus carriage returns (a parser
#: reads them as newlines) and the bidirectional overrides and isolates.
_UNFIT = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069]")
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


@dataclass(frozen=True)
class MusicVideoInfo:
    """What a music video's NFO says. ``artists``: the video's artist first;
    ``duration`` in seconds; ``thumb``: the file name of its ``-thumb.jpg`` when it has
    one; ``premiered``: ``YYYY-MM-DD``."""

    title: str
    extractor: str
    video_id: str
    source_url: str
    artists: Sequence[str] = ()
    album: str | None = None
    year: int | None = None
    premiered: str | None = None
    genres: Sequence[str] = ()
    director: str | None = None
    duration: float | None = None
    thumb: str | None = None
    added: datetime | None = None


@dataclass(frozen=True)
class ArtistInfo:
    """What an artist's ``artist.nfo`` says (what enrichment found on MusicBrainz);
    ``thumb``: the file name of its ``folder.jpg`` when it has one."""

    name: str
    mbid: str | None = None
    disambiguation: str | None = None
    genres: Sequence[str] = field(default_factory=tuple)
    country: str | None = None
    begin_year: int | None = None
    thumb: str | None = None


def clean(text: str) -> str:
    """``text`` without what an XML 1.0 document cannot hold (or should not show)."""
    return _UNFIT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def runtime_minutes(seconds: float) -> int:
    """A duration as Kodi's ``<runtime>`` wants it: whole minutes, rounded, and at least
    one for any video that lasts (0 would read as "unknown")."""
    return max(1, round(seconds / 60))


def music_video_nfo(info: MusicVideoInfo) -> bytes:
    """The ``<musicvideo>`` document for ``info``, UTF-8 with an XML declaration."""
    root = ET.Element("musicvideo")
    # Kodi requires a title: the id stands in for one that cleaning left empty.
    titles = (clean(text).strip() for text in (info.title, info.video_id))
    _add(root, "title", next((title for title in titles if title), "untitled"))
    for artist in _distinct(info.artists):
        _add(root, "artist", artist)
    _add(root, "album", info.album)
    for genre in _distinct(info.genres):
        _add(root, "genre", genre)
    _add(root, "director", info.director)
    if info.premiered:
        _add(root, "premiered", info.premiered)
    year = info.year or (_year_of(info.premiered) if info.premiered else None)
    if year:
        _add(root, "year", str(year))
    if info.duration:
        _add(root, "runtime", str(runtime_minutes(info.duration)))
    if info.thumb:
        _add(root, "thumb", info.thumb, aspect="thumb")
    _add(root, "uniqueid", info.video_id, type=info.extractor, default="true")
    _add(root, "sourceurl", info.source_url)
    if info.added is not None:
        _add(root, "dateadded", info.added.strftime("%Y-%m-%d %H:%M:%S"))
    return _document(root)


def artist_nfo(info: ArtistInfo) -> bytes:
    """The ``<artist>`` document (Kodi's ``artist.nfo``) for ``info``."""
    root = ET.Element("artist")
    _add(root, "name", info.name)
    _add(root, "musicBrainzArtistID", info.mbid)
    _add(root, "disambiguation", info.disambiguation)
    for genre in _distinct(info.genres):
        _add(root, "genre", genre)
    _add(root, "country", info.country)
    # MusicBrainz's "begin" is a band's founding or a person's birth; we don't keep
    # which, and Kodi shows <formed> as the text it is.
    if info.begin_year:
        _add(root, "formed", str(info.begin_year))
    if info.thumb:
        _add(root, "thumb", info.thumb)
    return _document(root)


def _add(parent: ET.Element, tag: str, text: str | None, **attributes: str) -> None:
    """A child ``<tag>text</tag>``, unless ``text`` is empty once cleaned."""
    value = clean(text or "").strip()
    if value:
        child = ET.SubElement(parent, tag, {k: clean(v) for k, v in attributes.items()})
        child.text = value


def _distinct(values: Iterable[str]) -> list[str]:
    """``values`` in order, each once (case-insensitively), empty ones left out."""
    seen: set[str] = set()
    kept = []
    for value in values:
        key = clean(value).strip().casefold()
        if key and key not in seen:
            seen.add(key)
            kept.append(value)
    return kept


def _year_of(date: str) -> int | None:
    head = date[:4]
    return int(head) if head.isdigit() else None


def _document(root: ET.Element) -> bytes:
    ET.indent(root)
    return _DECLARATION + ET.tostring(root, encoding="unicode").encode() + b"\n"
