"""NFO files (media/nfo.py) parsed back with xml.etree: what a music video's and an
artist's say, hostile text escaped or removed, only tags Kodi's wiki lists (or the ones
documented as ours), and the sidecars' names (media/library.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from media.library import artist_sidecars, sidecar, sidecars_of
from media.nfo import ArtistInfo, MusicVideoInfo, artist_nfo, music_video_nfo, runtime_minutes

#: The <musicvideo> tags of https://kodi.wiki/view/NFO_files/Music_videos ("Music Video
#: Tags"; Kodi v20).
KODI_MUSIC_VIDEO_TAGS = {
    "musicvideo", "title", "userrating", "top250", "track", "album", "outline", "plot",
    "tagline", "runtime", "thumb", "mpaa", "playcount", "lastplayed", "id", "genre", "tag",
    "director", "premiered", "year", "status", "code", "aired", "studio", "trailer",
    "fileinfo", "artist", "resume", "dateadded",
}  # fmt: skip
#: The <artist> tags of https://kodi.wiki/view/NFO_files/Music (artist.nfo).
KODI_ARTIST_TAGS = {
    "artist", "name", "musicBrainzArtistID", "sortname", "type", "gender", "disambiguation",
    "genre", "style", "mood", "yearsactive", "born", "formed", "instruments", "biography",
    "died", "disbanded", "thumb", "path", "album",
}  # fmt: skip
#: Beyond the wiki's tables, as media/nfo.py's docstring says why: <uniqueid> (Kodi's
#: parser reads it for every video, Jellyfin as a provider id), <sourceurl> (ours), and
#: <country> in artist.nfo (Jellyfin reads it).
DOCUMENTED_EXTRAS = {"uniqueid", "sourceurl", "country"}

FULL = MusicVideoInfo(
    title="Hoppípolla",
    extractor="youtube",
    video_id="dQw4w9WgXcQ",
    source_url="https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=x",
    artists=["Sigur Rós", "Jónsi", "sigur rós"],
    album="Takk...",
    year=2005,
    premiered="2005-11-28",
    genres=["Post-rock", "Ambient"],
    director="Arni & Kinski",
    duration=269.6,
    thumb="Hoppípolla [dQw4w9WgXcQ]-thumb.jpg",
    added=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


def parsed(document: bytes) -> ET.Element:
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"')
    return ET.fromstring(document)


def test_a_music_video_nfo_says_what_media_servers_read() -> None:
    root = parsed(music_video_nfo(FULL))
    assert root.tag == "musicvideo"
    assert root.findtext("title") == "Hoppípolla"
    # The video's artist first, then the others, each once.
    assert [e.text for e in root.findall("artist")] == ["Sigur Rós", "Jónsi"]
    assert root.findtext("album") == "Takk..."
    assert [e.text for e in root.findall("genre")] == ["Post-rock", "Ambient"]
    assert root.findtext("director") == "Arni & Kinski"
    assert (root.findtext("year"), root.findtext("premiered")) == ("2005", "2005-11-28")
    assert root.findtext("runtime") == "4"  # minutes, as Kodi wants (269.6 s)
    unique = root.find("uniqueid")
    assert unique is not None and unique.text == "dQw4w9WgXcQ"
    assert unique.attrib == {"type": "youtube", "default": "true"}
    assert root.findtext("sourceurl") == FULL.source_url
    assert root.findtext("thumb") == "Hoppípolla [dQw4w9WgXcQ]-thumb.jpg"
    assert root.findtext("dateadded") == "2026-01-02 03:04:05"


def test_what_the_source_did_not_say_is_left_out() -> None:
    bare = MusicVideoInfo(title="clip", extractor="generic", video_id="clip", source_url="u")
    root = parsed(music_video_nfo(bare))
    assert [child.tag for child in root] == ["title", "uniqueid", "sourceurl"]
    # The year comes from the premiere date when the source gave only that.
    dated = MusicVideoInfo(**{**bare.__dict__, "premiered": "1999-12-31", "duration": 5.0})
    root = parsed(music_video_nfo(dated))
    assert (root.findtext("year"), root.findtext("runtime")) == ("1999", "1")


def test_runtime_is_whole_minutes_and_never_zero_for_a_video_that_lasts() -> None:
    assert [runtime_minutes(s) for s in (1, 89, 91, 240, 3600)] == [1, 1, 2, 4, 60]


def test_hostile_text_is_escaped_or_removed_and_the_document_stays_well_formed() -> None:
    hostile = "<b>Tom & Jerry</b> ]]> \x00\x07\x1b\x0c\ufffe evil\u202egpj.exe \ud800 \"'"
    long_title = "Ω" * 10_000
    info = MusicVideoInfo(
        title=long_title + hostile,
        extractor='gen"eric<&>\x01',
        video_id="id\x00<1>",
        source_url="http://x/?a=1&b=<2>",
        artists=[hostile, "\x00\x01", "  "],
        genres=["R&B", "R&B", "r&b"],
        album="line one\r\nline two\rthree",
    )
    document = music_video_nfo(info)
    root = parsed(document)  # well-formed: the parser took it
    expected = "<b>Tom & Jerry</b> ]]>  evilgpj.exe  \"'"
    assert root.findtext("title") == long_title + expected
    assert [e.text for e in root.findall("artist")] == [expected]  # the empty ones left out
    assert [e.text for e in root.findall("genre")] == ["R&B"]
    assert root.findtext("album") == "line one\nline two\nthree"
    unique = root.find("uniqueid")
    assert unique is not None and unique.text == "id<1>"
    assert unique.attrib["type"] == 'gen"eric<&>'
    assert root.findtext("sourceurl") == "http://x/?a=1&b=<2>"
    assert b"\x00" not in document and "\u202e".encode() not in document
    assert b"&lt;b&gt;Tom &amp; Jerry" in document  # escaped by the library


@given(st.text())
def test_any_text_makes_a_well_formed_document(text: str) -> None:
    info = MusicVideoInfo(
        title=text, extractor=text, video_id=text or "x", source_url=text, artists=[text]
    )
    root = parsed(music_video_nfo(info))
    assert root.findtext("title")  # never empty: Kodi requires a title
    parsed(artist_nfo(ArtistInfo(name=text, genres=[text], country=text)))


def test_every_tag_written_is_one_kodi_lists_or_one_documented_as_ours() -> None:
    video_tags = {element.tag for element in parsed(music_video_nfo(FULL)).iter()}
    assert video_tags - KODI_MUSIC_VIDEO_TAGS <= DOCUMENTED_EXTRAS, video_tags
    artist = ArtistInfo(
        name="Sigur Rós",
        mbid="f6f2326f-6b25-4170-b89d-e235b25508e8",
        disambiguation="Icelandic band",
        genres=["post-rock"],
        country="IS",
        begin_year=1994,
        thumb="folder.jpg",
    )
    artist_tags = {element.tag for element in parsed(artist_nfo(artist)).iter()}
    assert artist_tags - KODI_ARTIST_TAGS <= DOCUMENTED_EXTRAS, artist_tags
    assert len(artist_tags) == 8  # every field above was written


def test_an_artist_nfo_says_what_enrichment_found() -> None:
    root = parsed(
        artist_nfo(
            ArtistInfo(
                name="Nina Simone",
                mbid="8b1e1e7a-0000-4000-8000-000000000000",
                genres=["jazz", "soul", "Jazz"],
                country="US",
                begin_year=1933,
                thumb="folder.jpg",
            )
        )
    )
    assert root.tag == "artist" and root.findtext("name") == "Nina Simone"
    assert root.findtext("musicBrainzArtistID") == "8b1e1e7a-0000-4000-8000-000000000000"
    assert [e.text for e in root.findall("genre")] == ["jazz", "soul"]
    assert (root.findtext("country"), root.findtext("formed")) == ("US", "1933")
    assert root.findtext("thumb") == "folder.jpg"
    # An artist nothing is known of: its name alone.
    assert [child.tag for child in parsed(artist_nfo(ArtistInfo(name="X")))] == ["name"]


def test_sidecars_share_their_video_s_name_without_its_extension() -> None:
    video = "Sigur Rós/Hoppípolla v1.2 [abc] (2).mp4"
    assert sidecar(video, ".nfo") == PurePosixPath("Sigur Rós/Hoppípolla v1.2 [abc] (2).nfo")
    assert sidecars_of(video) == [
        PurePosixPath("Sigur Rós/Hoppípolla v1.2 [abc] (2).nfo"),
        PurePosixPath("Sigur Rós/Hoppípolla v1.2 [abc] (2)-thumb.jpg"),
    ]
    assert artist_sidecars("Sigur Rós") == [
        PurePosixPath("Sigur Rós/artist.nfo"),
        PurePosixPath("Sigur Rós/folder.jpg"),
    ]
