"""A video's subtitles as WebVTT files: the ones yt-dlp wrote (its
``FFmpegSubtitlesConvertor`` turns every format into WebVTT, :func:`subtitle_options`)
and the text subtitle streams a downloaded file carries (``mov_text`` in mp4,
``subrip``/``ass``/``webvtt`` in mkv), extracted with ffmpeg when yt-dlp gave none in
that language (:func:`extract_embedded`).

Languages are yt-dlp's language patterns (``--sub-langs``: regular expressions, ``all``,
a leading ``-`` to leave some out); a language a source names becomes a short name
safe in a file name and a URL (:func:`subtitle_lang`), since it ends up in both
(``<stem>.<lang>.vtt``, ``/subtitles/<id>/<lang>``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from media.ffmpeg import run_to_end
from media.names import component

logger = logging.getLogger(__name__)

#: The most subtitle files one video keeps (a source may list a hundred translations).
MAX_SUBTITLES = 20
#: The longest language name, in bytes (``media.names.SIDECAR_ROOM`` leaves room for it).
LANG_BYTES = 24
#: The subtitle codecs that are text; bitmap ones (DVD, PGS) cannot become WebVTT.
TEXT_CODECS = frozenset({"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"})
EXTRACT_TIMEOUT_S = 60.0
_NOT_WORD = re.compile(r"[^\w-]+")


@dataclass(frozen=True)
class SubtitleFile:
    """A WebVTT file in a download's work folder.

    Parameters:
      lang: the language, as :func:`subtitle_lang` made it safe.
      automatic: captions made by the site's speech recognition, not by a person.
    """

    lang: str
    path: Path
    automatic: bool = False


def subtitle_lang(raw: object) -> str:
    """A language name safe in a file name and a URL path segment: letters, digits,
    ``-`` and ``_`` (``../../x`` becomes ``x``), at most :data:`LANG_BYTES` bytes,
    ``und`` for nothing left."""
    safe = _NOT_WORD.sub("_", component(str(raw or ""), limit=LANG_BYTES * 4)).strip("_-")
    return component(safe, limit=LANG_BYTES, fallback="und").strip("_-") or "und"


def chosen_langs(available: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """Of ``available``, the languages ``patterns`` ask for, as yt-dlp chooses them
    (``YoutubeDL.process_subtitles`` does this inline: there is no function of its own
    to call): each pattern in turn adds the languages it fully matches, ``all`` adds
    every one, a ``-`` pattern removes what it matches, ``-all`` everything so far."""
    langs = list(dict.fromkeys(available))
    wanted: list[str] = []
    for pattern in patterns:
        discard = pattern.startswith("-")
        pattern = pattern.removeprefix("-")
        if pattern == "all":
            wanted = [] if discard else wanted + langs
            continue
        try:
            matches = [lang for lang in langs if re.match(pattern + "$", lang)]
        except re.error:
            continue  # the settings refuse such a pattern; never fail a download on one
        if discard:
            wanted = [lang for lang in wanted if lang not in matches]
        else:
            wanted += matches
    return list(dict.fromkeys(wanted))


def subtitle_options(patterns: Sequence[str], *, automatic: bool) -> dict[str, Any]:
    """yt-dlp's options that write the subtitles ``patterns`` ask for as WebVTT (none
    for no pattern): WebVTT as the site offers it where it does, else the best format,
    converted by its ``FFmpegSubtitlesConvertor`` before the video downloads."""
    if not patterns:
        return {}
    return {
        "writesubtitles": True,
        "writeautomaticsub": automatic,
        "subtitleslangs": list(patterns),
        "subtitlesformat": "vtt/best",
        "postprocessors": [
            {"key": "FFmpegSubtitlesConvertor", "format": "vtt", "when": "before_dl"}
        ],
    }


def written_subtitles(info: dict[str, Any], workdir: Path) -> list[SubtitleFile]:
    """The WebVTT files yt-dlp wrote for ``info`` (its ``requested_subtitles``), each
    in ``workdir``; a language it had as a person's subtitles and as automatic captions
    came from the subtitles (yt-dlp prefers them)."""
    requested = info.get("requested_subtitles")
    if not isinstance(requested, dict):
        return []
    by_people = info.get("subtitles") if isinstance(info.get("subtitles"), dict) else {}
    root = workdir.resolve()
    found: dict[str, SubtitleFile] = {}
    for raw_lang, sub in requested.items():
        if not isinstance(sub, dict) or sub.get("ext") != "vtt" or not sub.get("filepath"):
            continue
        path = Path(str(sub["filepath"])).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        lang = subtitle_lang(raw_lang)
        if lang not in found and len(found) < MAX_SUBTITLES:
            found[lang] = SubtitleFile(lang, path, automatic=raw_lang not in (by_people or {}))
    return list(found.values())


def text_subtitle_streams(video: Path) -> list[tuple[int, str]]:
    """``(stream index, language)`` of each text subtitle stream of ``video``; a stream
    without a language is ``und``, a three-letter ISO 639-2 one its two-letter form
    (``eng`` is ``en``, as sites name it). Nothing for a file FFmpeg cannot read."""
    import av
    from yt_dlp.utils import ISO639Utils

    from media.probe import OPEN_OPTIONS

    try:
        with av.open(str(video), options=OPEN_OPTIONS, timeout=(15.0, 15.0)) as container:
            streams = list(container.streams.subtitles)
            found = []
            for stream in streams:
                codec = stream.codec_context.name if stream.codec_context else None
                if codec not in TEXT_CODECS:
                    continue
                raw = str(stream.metadata.get("language") or "und")
                found.append((stream.index, ISO639Utils.long2short(raw) or raw))
            return found
    except (av.error.FFmpegError, OSError):
        return []


def extract_embedded(
    video: Path,
    workdir: Path,
    patterns: Sequence[str],
    *,
    ffmpeg: str,
    have: Iterable[str] = (),
    limit: int = MAX_SUBTITLES,
) -> list[SubtitleFile]:
    """Extract ``video``'s text subtitle streams in the languages ``patterns`` ask for
    into WebVTT files in ``workdir``: one per language (its first stream), none for a
    language in ``have`` (yt-dlp's files), at most ``limit``. A stream FFmpeg cannot
    convert is logged and left out; nothing here raises for the file's content."""
    streams = text_subtitle_streams(video)
    wanted = set(chosen_langs((lang for _, lang in streams), patterns))
    taken = set(have)
    found: list[SubtitleFile] = []
    for index, raw in streams:
        lang = subtitle_lang(raw)
        if raw not in wanted or lang in taken or len(found) >= limit:
            continue
        taken.add(lang)
        target = workdir / f"embedded.{lang}.vtt"
        argv = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-protocol_whitelist", "file", "-i", f"file:{video}",
            "-map", f"0:{index}", "-c:s", "webvtt", "-f", "webvtt", f"file:{target}",
        ]  # fmt: skip
        code, err = run_to_end(argv, timeout=EXTRACT_TIMEOUT_S)
        if code != 0 or not is_webvtt(target):
            logger.info("subtitle stream %s (%s) not extracted: %s", index, lang, err.strip())
            target.unlink(missing_ok=True)
            continue
        found.append(SubtitleFile(lang, target))
    return found


def is_webvtt(path: Path) -> bool:
    """The file starts as a WebVTT file does (a BOM allowed)."""
    try:
        with path.open("rb") as f:
            return f.read(9).removeprefix(b"\xef\xbb\xbf").startswith(b"WEBVTT")
    except OSError:
        return False


def subtitle_path(video: PurePosixPath, lang: str) -> PurePosixPath:
    """Where a video's subtitles in ``lang`` go: beside it, ``<stem>.<lang>.vtt`` (the
    stem being the video's file name without its extension)."""
    return video.with_name(f"{video.stem}.{subtitle_lang(lang)}.vtt")
