"""Subtitles and chapters, pure: languages made safe for names and URLs, chosen as
yt-dlp chooses them, text subtitle streams extracted to WebVTT by a real ffmpeg, and
chapters from a hostile info dict cleaned and bounded."""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.chapters import MAX_CHAPTERS, MAX_TITLE, chapters_of, sponsorblock_options
from media.ffmpeg import ffmpeg_path
from media.subtitles import (
    LANG_BYTES,
    chosen_langs,
    extract_embedded,
    is_webvtt,
    subtitle_lang,
    subtitle_options,
    subtitle_path,
    written_subtitles,
)
from tests.support import SRT, with_subtitles


@pytest.mark.parametrize(
    ("raw", "safe"),
    [("en", "en"), ("en-US", "en-US"), ("zh-Hans", "zh-Hans"), ("live_chat", "live_chat"),
     ("../../x", "x"), ("..", "und"), ("", "und"), (None, "und"), ("a/b\\c", "a_b_c"),
     ("en.vtt", "en_vtt"), ("x]y", "x_y")],
)  # fmt: skip
def test_a_language_becomes_a_short_name_safe_in_a_file_name_and_a_url(
    raw: str | None, safe: str
) -> None:
    assert subtitle_lang(raw) == safe


@given(st.text(max_size=400))
def test_no_language_leads_out_of_the_video_folder_or_past_the_byte_limit(raw: str) -> None:
    lang = subtitle_lang(raw)
    assert 1 <= len(lang.encode()) <= LANG_BYTES
    assert "/" not in lang and "." not in lang and lang not in ("", ".", "..")
    place = subtitle_path(PurePosixPath("Artist/Title [id].mp4"), raw)
    assert place.parent == PurePosixPath("Artist")
    assert place.name == f"Title [id].{lang}.vtt"


def test_a_three_hundred_character_language_is_cut_short() -> None:
    assert subtitle_lang("x" * 300) == "x" * LANG_BYTES


def test_languages_are_chosen_as_yt_dlp_chooses_them() -> None:
    from yt_dlp import YoutubeDL

    patterns = ["en.*", "-en-GB", "pt", "all", "-live_chat", "-fr", ".*-orig"]
    normal = {lang: [{"ext": "vtt", "url": "x"}] for lang in ("en", "en-GB", "fr", "pt", "ja")}
    normal["live_chat"] = [{"ext": "json", "url": "x"}]
    automatic = {"de-orig": [{"ext": "vtt", "url": "x"}]}
    for chosen in (patterns, ["en.*"], ["-all", "ja"], ["ja", "-all", "en"], ["all", "-all"]):
        params = {"writesubtitles": True, "writeautomaticsub": True, "subtitleslangs": chosen}
        with YoutubeDL({**params, "quiet": True}) as ydl:
            theirs = ydl.process_subtitles("id", normal, automatic) or {}
        ours = chosen_langs([*normal, *automatic], chosen)
        assert set(ours) == set(theirs), chosen


def test_no_pattern_asks_yt_dlp_for_nothing_and_one_asks_for_webvtt() -> None:
    assert subtitle_options((), automatic=True) == {}
    options = subtitle_options(("en.*",), automatic=False)
    assert options["writesubtitles"] is True and options["writeautomaticsub"] is False
    assert options["postprocessors"] == [
        {"key": "FFmpegSubtitlesConvertor", "format": "vtt", "when": "before_dl"}
    ]


def test_only_webvtt_files_inside_the_work_folder_are_taken_from_yt_dlp(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "id.en.vtt").write_text("WEBVTT\n")
    (work / "id.de.vtt").write_text("WEBVTT\n")
    (tmp_path / "outside.vtt").write_text("WEBVTT\n")
    info = {
        "subtitles": {"en": []},
        "requested_subtitles": {
            "en": {"ext": "vtt", "filepath": str(work / "id.en.vtt")},
            "de": {"ext": "vtt", "filepath": str(work / "id.de.vtt")},
            "fr": {"ext": "srt", "filepath": str(work / "id.fr.srt")},
            "../x": {"ext": "vtt", "filepath": str(work / ".." / "outside.vtt")},
            "es": {"ext": "vtt", "filepath": str(work / "missing.vtt")},
        },
    }
    found = {sub.lang: sub for sub in written_subtitles(info, work)}
    assert set(found) == {"en", "de"}
    assert not found["en"].automatic and found["de"].automatic


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_a_text_subtitle_stream_is_extracted_to_webvtt(
    tmp_path: Path, sample_video: Path, container: str
) -> None:
    srt = tmp_path / "lines.srt"
    srt.write_text(SRT)
    clip = with_subtitles(sample_video, srt, tmp_path / f"clip.{container}", lang="eng")
    work = tmp_path / "work"
    work.mkdir()

    found = extract_embedded(clip, work, ["en.*"], ffmpeg=ffmpeg_path())

    assert [(sub.lang, sub.automatic) for sub in found] == [("en", False)]
    assert is_webvtt(found[0].path)
    text = found[0].path.read_text()
    assert "Hello from the first line" in text and "And the second one" in text
    assert found[0].path.parent == work
    # A language yt-dlp wrote already, or one not asked for, is not extracted.
    assert extract_embedded(clip, work, ["en.*"], ffmpeg=ffmpeg_path(), have=["en"]) == []
    assert extract_embedded(clip, work, ["fr"], ffmpeg=ffmpeg_path()) == []
    assert extract_embedded(clip, work, [], ffmpeg=ffmpeg_path()) == []


def test_a_file_without_subtitle_streams_or_not_media_gives_none(
    tmp_path: Path, sample_video: Path
) -> None:
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video" * 100)
    assert extract_embedded(sample_video, tmp_path, ["all"], ffmpeg=ffmpeg_path()) == []
    assert extract_embedded(junk, tmp_path, ["all"], ffmpeg=ffmpeg_path()) == []


def test_chapters_come_sorted_from_the_source_and_from_sponsorblock() -> None:
    info = {
        "chapters": [
            {"start_time": 30.0, "end_time": 60.0, "title": "Chorus"},
            {"start_time": 0, "end_time": 30.0, "title": "Verse"},
        ],
        "sponsorblock_chapters": [
            {"start_time": 0.0, "end_time": 5.0, "title": "Intermission/Intro Animation",
             "category": "intro", "type": "skip"},
        ],
    }  # fmt: skip
    assert [chapter.as_json() for chapter in chapters_of(info)] == [
        {"start": 0.0, "end": 5.0, "title": "Intermission/Intro Animation",
         "source": "sponsorblock", "category": "intro"},
        {"start": 0.0, "end": 30.0, "title": "Verse", "source": "chapters"},
        {"start": 30.0, "end": 60.0, "title": "Chorus", "source": "chapters"},
    ]  # fmt: skip
    assert chapters_of({}) == chapters_of({"chapters": "nonsense"}) == ()


def test_a_hostile_chapter_list_is_cleaned_and_bounded() -> None:
    bad_times = [math.nan, math.inf, -1.0, "12", None, True]
    raw: list[object] = [
        {"start_time": float(n), "end_time": float(n) + 1, "title": f"t{n}\x00\u202e" + "x" * 300}
        for n in range(10_000, 0, -1)
    ]
    raw += [{"start_time": bad, "end_time": 5.0, "title": "bad"} for bad in bad_times]
    raw += [{"start_time": 5.0, "end_time": bad, "title": "bad"} for bad in bad_times]
    raw += [{"start_time": 9.0, "end_time": 3.0}, "not a chapter", ["nor", "this"]]
    chapters = chapters_of({"chapters": raw, "sponsorblock_chapters": [{"category": "../x"}]})

    assert len(chapters) == MAX_CHAPTERS
    assert [chapter.start for chapter in chapters] == [float(n) for n in range(1, 501)]
    for chapter in chapters:
        assert math.isfinite(chapter.start) and math.isfinite(chapter.end)
        assert 0 <= chapter.start <= chapter.end
        assert len(chapter.title) <= MAX_TITLE and "\x00" not in chapter.title
        assert "\u202e" not in chapter.title and chapter.title != "bad"


def test_sponsorblock_asks_yt_dlp_for_its_segments_only_when_categories_are_set() -> None:
    assert sponsorblock_options(()) == []
    assert sponsorblock_options(("sponsor", "intro")) == [
        {"key": "SponsorBlock", "categories": ["sponsor", "intro"], "when": "after_filter"}
    ]


def test_the_settings_know_the_sponsorblock_categories_yt_dlp_knows() -> None:
    from yt_dlp.postprocessor.sponsorblock import SponsorBlockPP

    from db.settings import SPONSORBLOCK_CATEGORIES

    assert SPONSORBLOCK_CATEGORIES - {"all"} == set(SponsorBlockPP.CATEGORIES)


def test_subtitle_and_sponsorblock_settings_refuse_what_yt_dlp_could_not_use() -> None:
    from db.settings import SUBTITLE_LANGS, SettingsError, load_settings

    base = {"VIDFLEET_ADMIN_TOKEN": "x" * 20, "VIDFLEET_DATA_DIR": "/tmp/vidfleet-settings"}
    default = load_settings(base)
    assert default.subtitle_langs == tuple(SUBTITLE_LANGS.split(","))
    assert default.auto_captions is False and default.sponsorblock == ()
    chosen = load_settings(
        {**base, "VIDFLEET_SUBTITLE_LANGS": "", "VIDFLEET_SPONSORBLOCK": "Sponsor, intro"}
    )
    assert chosen.subtitle_langs == () and chosen.sponsorblock == ("sponsor", "intro")
    every = load_settings({**base, "VIDFLEET_SPONSORBLOCK": "all"}).sponsorblock
    assert "music_offtopic" in every and "all" not in every
    with pytest.raises(SettingsError, match="VIDFLEET_SUBTITLE_LANGS"):
        load_settings({**base, "VIDFLEET_SUBTITLE_LANGS": "en,(unclosed"})
    with pytest.raises(SettingsError, match="VIDFLEET_SPONSORBLOCK"):
        load_settings({**base, "VIDFLEET_SPONSORBLOCK": "sponsor,adverts"})
    with pytest.raises(SettingsError, match="VIDFLEET_AUTO_CAPTIONS"):
        load_settings({**base, "VIDFLEET_AUTO_CAPTIONS": "maybe"})
