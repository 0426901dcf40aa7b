"""Downloads one video with yt-dlp's Python API into a directory of the caller's.

Progress comes from yt-dlp's ``progress_hooks`` and ``postprocessor_hooks`` (never from
parsing its output); cancellation is a callable polled from those hooks. A download
never eats into the disk's reserve: the room left (free space minus the reserve) is
yt-dlp's ``max_filesize``, so a file whose announced size does not fit is refused before
a byte is written, and one without a size is stopped as it outgrows the room.

Each download builds a ``YoutubeDL`` of its own, from the extractor list a process
works out once (:mod:`media.ytdl_setup`); a fork server prepares that list, and what
else every download would build first, before it forks (:func:`prepare_downloads`).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yt_dlp.postprocessor.common import PostProcessor
from yt_dlp.utils import DownloadCancelled, DownloadError

from media.chapters import Chapter, chapters_of, sponsorblock_options
from media.disk import DiskFull, free_bytes, is_disk_full, same_filesystem
from media.egress import BlockedAddress, refusals
from media.errors import Cancelled, MediaError
from media.formats import QUALITY_FORMATS
from media.subtitles import (
    MAX_SUBTITLES,
    SubtitleFile,
    subtitle_lang,
    subtitle_options,
    written_subtitles,
)
from media.ytdl_setup import extractors, share_tls_context, youtube_dl

logger = logging.getLogger(__name__)

# yt-dlp error texts that no retry will fix. Anything else (network, 5xx, timeouts)
# is worth another attempt.
PERMANENT_ERRORS = (
    ("unsupported url", "unsupported_url"),
    ("no suitable extractor", "unsupported_url"),
    ("http error 404", "not_found"),
    ("http error 410", "not_found"),
    ("http error 403", "forbidden"),
    ("http error 401", "forbidden"),
    ("private video", "private"),
    ("video unavailable", "unavailable"),
    ("has been removed", "unavailable"),
    ("not available in your country", "geo_blocked"),
    ("requested format is not available", "format_unavailable"),
)


@dataclass(frozen=True)
class DownloadPolicy:
    """How politely and patiently to download.

    Parameters:
      rate_limit: at most this many bytes per second (None: no limit).
      sleep_interval, max_sleep_interval: sleep a random time in this range (seconds)
        before each download, as yt-dlp's ``--sleep-interval`` does.
      stall_timeout: give up on a connection that delivers no bytes for this long
        (seconds); the error is retryable.
      cookies_file: a Netscape cookies file for sites that need a login; each download
        reads (and yt-dlp rewrites) a copy of its own, never this file.
      max_filesize: refuse a file larger than this many bytes (None: no limit).
      min_free_bytes: the reserve: a file that would leave less than this free on the
        work folder's (or the library's) filesystem fails with ``disk_full``.
    """

    rate_limit: int | None = None
    sleep_interval: float = 0.0
    max_sleep_interval: float = 0.0
    stall_timeout: float = 60.0
    cookies_file: Path | None = None
    max_filesize: int | None = None
    min_free_bytes: int = 0


class AlreadyDownloaded(MediaError):
    """The video behind this URL is already in the caller's archive."""

    def __init__(self, extractor: str, video_id: str) -> None:
        super().__init__(
            f"{extractor} video {video_id} is already in the library",
            code="already_in_library",
            retryable=False,
        )
        self.extractor = extractor
        self.video_id = video_id


class _Archive:
    """yt-dlp's ``download_archive`` (a set of ``"<extractor> <id>"``) over a lookup of
    the caller's: yt-dlp asks it before downloading, so a video already in the library
    is recognised under any URL form without being downloaded again."""

    def __init__(self, already_have: Callable[[str, str], bool]) -> None:
        self.already_have = already_have
        self.hit: tuple[str, str] | None = None

    def __bool__(self) -> bool:
        return True

    def __contains__(self, archive_id: object) -> bool:
        extractor, _, video_id = str(archive_id).partition(" ")
        if video_id and self.already_have(extractor, video_id):
            self.hit = (extractor, video_id)
            return True
        return False

    def add(self, archive_id: str) -> None:
        """yt-dlp records each download here; the library row is our record."""


class _SafeSubtitleLangs(PostProcessor):
    """Runs after yt-dlp chose the subtitles and before it writes them: names each
    language as :func:`media.subtitles.subtitle_lang` does (yt-dlp puts the language a
    site gives into the file name, and refuses the whole download for a name like
    ``../../x``), keeps at most :data:`media.subtitles.MAX_SUBTITLES` and drops a
    subtitle whose format is no plain extension."""

    def run(self, info: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        for key in ("subtitles", "automatic_captions"):
            if isinstance(info.get(key), dict):
                info[key] = {subtitle_lang(lang): subs for lang, subs in info[key].items()}
        requested = info.get("requested_subtitles")
        if isinstance(requested, dict):
            safe: dict[str, Any] = {}
            for lang, sub in requested.items():
                name = subtitle_lang(lang)
                ext = str(sub.get("ext") or "") if isinstance(sub, dict) else ""
                if name not in safe and len(safe) < MAX_SUBTITLES and _PLAIN_EXT.fullmatch(ext):
                    safe[name] = sub
            info["requested_subtitles"] = safe or None
        return [], info


_PLAIN_EXT = re.compile(r"[a-z0-9]{1,8}")


@dataclass(frozen=True)
class DownloadProgress:
    stage: str  # "downloading" | "postprocessing"
    fraction: float | None  # None when the total size is unknown
    downloaded_bytes: int | None
    total_bytes: int | None
    speed: float | None  # bytes per second
    eta: float | None  # seconds


@dataclass(frozen=True)
class VideoMetadata:
    """What the source says of a video beyond its title and artist; None where nothing."""

    artists: tuple[str, ...] = ()
    album: str | None = None
    release_year: int | None = None
    premiered: str | None = None  # YYYY-MM-DD
    genres: tuple[str, ...] = ()
    director: str | None = None


def _date(raw: object) -> str | None:
    text = str(raw or "")
    if len(text) == 8 and text.isascii() and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def _texts(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item or "").strip()))


def metadata_of(info: dict[str, Any]) -> VideoMetadata:
    """The metadata yt-dlp's info dict gives (its ``artists``/``artist``, ``album``,
    ``release_year``, ``release_date`` or ``upload_date``, ``genres``/``genre``)."""
    artists = _texts(info.get("artists")) or tuple(
        name.strip() for name in str(info.get("artist") or "").split(",") if name.strip()
    )
    premiered = _date(info.get("release_date")) or _date(info.get("upload_date"))
    year = info.get("release_year")
    if not isinstance(year, int) or not 1000 <= year <= 9999:
        year = int(premiered[:4]) if premiered else None
    album = str(info["album"]).strip() if info.get("album") else None
    return VideoMetadata(
        artists=artists,
        album=album or None,
        release_year=year,
        premiered=premiered,
        genres=_texts(info.get("genres")) or _texts(info.get("genre")),
    )


@dataclass(frozen=True)
class DownloadedMedia:
    path: Path
    extractor: str
    video_id: str
    title: str
    artist: str | None
    webpage_url: str
    ext: str
    #: What media servers read (see :func:`metadata_of`).
    metadata: VideoMetadata = field(default_factory=VideoMetadata)
    #: The WebVTT files yt-dlp wrote in the work folder (media.subtitles).
    subtitles: tuple[SubtitleFile, ...] = ()
    #: The source's chapters and SponsorBlock's segments (media.chapters).
    chapters: tuple[Chapter, ...] = ()


#: The postprocessors that run before the download (no "postprocessing" stage for them).
BEFORE_DOWNLOAD = frozenset({"FFmpegSubtitlesConvertor", "SponsorBlock"})

# yt-dlp's HttpFD, refusing a Content-Length over max_filesize before it writes a byte.
_REFUSED_SIZE = re.compile(r"larger than max-filesize \((\d+) bytes > (\d+) bytes\)")


class QuietLogger:
    """Sends yt-dlp's messages to ``log`` instead of stdout: its chatter at debug level,
    its warnings and errors at info (a failure reaches the job as its error)."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log

    def debug(self, msg: str) -> None:
        self.log.debug(msg)

    def info(self, msg: str) -> None:
        self.log.debug(msg)

    def warning(self, msg: str) -> None:
        self.log.info(msg)

    def error(self, msg: str) -> None:
        self.log.info(msg)


class _Logger(QuietLogger):
    """A download's logger: notices the message that says a file was skipped for its
    size (yt-dlp gives no other sign of it)."""

    def __init__(self) -> None:
        super().__init__()
        self.too_large = False
        self.announced: int | None = None  # the size of the file it refused

    def debug(self, msg: str) -> None:
        if "larger than max-filesize" in msg:
            self.too_large = True
            found = _REFUSED_SIZE.search(msg)
            if found:
                self.announced = int(found.group(1))
        super().debug(msg)


def classify_error(text: str) -> MediaError:
    lowered = text.lower()
    for needle, code in PERMANENT_ERRORS:
        if needle in lowered:
            return MediaError(text, code=code, retryable=False)
    return MediaError(text, code="download_error", retryable=True)


def _overall_fraction(info: dict[str, Any], fraction: float) -> float:
    """A merged download (video + audio) fetches its parts one after another; count
    each part as an equal share so the overall fraction never goes backwards."""
    parts = info.get("requested_formats") or ()
    ids = [part.get("format_id") for part in parts]
    if len(ids) < 2 or info.get("format_id") not in ids:
        return fraction
    return (ids.index(info.get("format_id")) + fraction) / len(ids)


def clean_error(exc: DownloadError) -> str:
    """yt-dlp's error message without its ``ERROR:`` prefix."""
    return str(exc.msg or exc).removeprefix("ERROR: ").strip()


class _OneVideoOnly:
    """yt-dlp's ``match_filter``: skips a playlist and every entry of one (an extractor
    may hand a playlist's entries over fully extracted, where ``extract_flat`` cannot
    stop them), and remembers that it did."""

    def __init__(self) -> None:
        self.saw_playlist = False

    def __call__(self, info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        if info.get("_type") in ("playlist", "multi_video") or any(
            info.get(key) is not None for key in ("playlist_index", "playlist_id")
        ):
            self.saw_playlist = True
            return "a playlist, not one video"
        return None


def _too_large(limit: int) -> MediaError:
    return MediaError(
        f"the file is larger than the limit of {limit} bytes", code="too_large", retryable=False
    )


@dataclass(frozen=True)
class _Room:
    """What this download may still write: the free space of the tightest filesystem
    it writes to, minus the reserve, plus what an earlier attempt left in the work
    folder (a resumed download counts those bytes again)."""

    free: int
    reserve: int
    have: int
    where: str

    @property
    def bytes(self) -> int:
        return max(self.free - self.reserve + self.have, 0)

    def full(self, size: int | None, *, at_least: bool = False) -> DiskFull:
        needed = None if size is None else max(size - self.have, 0) + self.reserve
        return DiskFull(
            free=self.free,
            needed=needed,
            reserve=self.reserve,
            where=self.where,
            at_least=at_least,
        )


def _bytes_in(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _room(workdir: Path, library: Path | None, reserve: int) -> _Room:
    have = _bytes_in(workdir)
    room = _Room(free=free_bytes(workdir), reserve=reserve, have=have, where="the work folder")
    if library is not None and not same_filesystem(workdir, library):
        # The file will be copied there: it must fit there too.
        other = _Room(free=free_bytes(library), reserve=reserve, have=0, where="the library")
        if other.bytes < room.bytes:
            return other
    return room


def _private_copy(cookies_file: Path, workdir: Path) -> Path:
    """A copy of the cookies file for this download alone: yt-dlp writes its cookie
    jar back to the file it was given, and the operator's file must stay as it is."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "cookies.txt"
    shutil.copyfile(cookies_file, copy)
    copy.chmod(0o600)
    return copy


def _allowed_extractors(allow_generic: bool) -> list[str]:
    return ["default"] if allow_generic else ["default", "-generic"]


def prepare_downloads() -> None:
    """Do now what every download would otherwise do first, for a process whose forks
    run the downloads (:func:`media.isolation.warm_up`): compile every extractor's URL
    pattern (yt-dlp tries them in turn, the generic one last; about 0.3 s of CPU, kept
    by the process afterwards), import the generic extractor, load the plugins, list
    the extractors each ``allow_generic`` allows (:func:`media.ytdl_setup.extractors`),
    parse each quality's format once (yt-dlp's parser compiles its patterns on first
    use) and build the TLS context the downloads share
    (:func:`media.ytdl_setup.share_tls_context`).

    It connects nowhere, starts no thread and writes nothing.
    """
    import yt_dlp.extractor.generic  # noqa: F401  # the fallback, imported when first used

    for extractor in yt_dlp.extractor.gen_extractor_classes():
        extractor.suitable("https://example.com/video")
    for allow_generic in (False, True):
        extractors(tuple(_allowed_extractors(allow_generic)))
    for quality_format in QUALITY_FORMATS.values():
        # No extractors: only the format parser's work is wanted.
        youtube_dl({"format": quality_format, "quiet": True, "allowed_extractors": []}).close()
    share_tls_context()


def download_video(
    url: str,
    workdir: Path,
    *,
    quality: str = "best",
    ffmpeg_location: str | None = None,
    allow_generic: bool = False,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    already_have: Callable[[str, str], bool] | None = None,
    policy: DownloadPolicy | None = None,
    library: Path | None = None,
    subtitle_langs: tuple[str, ...] = (),
    auto_captions: bool = False,
    sponsorblock: tuple[str, ...] = (),
) -> DownloadedMedia:
    """Download ``url`` into ``workdir`` and return what was written.

    Parameters:
      subtitle_langs: yt-dlp's language patterns of the subtitles to write as WebVTT
        beside the video (none: no subtitles); ``auto_captions`` adds the site's
        automatic captions. Subtitles that fail (to download or to convert) are left
        out: the video is downloaded again without them, never failed for them.
      sponsorblock: SponsorBlock categories whose segments become chapters (YouTube).
      already_have: ``(extractor, video_id) -> bool``; a video it knows is not
        downloaded again (``AlreadyDownloaded``).
      library: where the file goes next; on another filesystem than ``workdir`` it
        must fit there too (with the policy's reserve).

    Raises:
      Cancelled: ``should_cancel`` returned true.
      AlreadyDownloaded: ``already_have`` knows the video.
      DiskFull: the file does not fit (announced, outgrowing the room, or ``ENOSPC``);
        any partial file is the caller's to remove with ``workdir``.
      MediaError: the download failed; ``retryable`` says whether to try again.
    """
    policy = policy or DownloadPolicy()
    archive = _Archive(already_have) if already_have is not None else None
    if quality not in QUALITY_FORMATS:
        raise MediaError(f"unknown quality {quality!r}", code="bad_quality", retryable=False)
    room = _room(workdir, library, policy.min_free_bytes)
    if room.bytes <= 0:
        raise room.full(0)
    ytdl_logger = _Logger()
    one_video = _OneVideoOnly()
    stopped: list[MediaError] = []  # why a hook stopped the download
    finished = [0]  # bytes of the parts already downloaded (a merge fetches two)
    seen = [0]  # the most this download was known to need, for a disk_full message

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise DownloadCancelled()

    def progress_hook(status: dict[str, Any]) -> None:
        check_cancel()
        done = status.get("downloaded_bytes")
        if status.get("status") == "finished":
            finished[0] += int(status.get("total_bytes") or done or 0)
            return
        if status.get("status") != "downloading":
            return
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        # A server that sends no length (or a stream of fragments) is only stopped
        # here, as the bytes arrive.
        size = max(done or 0, status.get("total_bytes") or 0)
        seen[0] = max(seen[0], finished[0] + size)
        if policy.max_filesize and size > policy.max_filesize:
            stopped.append(_too_large(policy.max_filesize))
            raise DownloadCancelled()
        if finished[0] + size > room.bytes:
            stopped.append(room.full(finished[0] + size, at_least=not status.get("total_bytes")))
            raise DownloadCancelled()
        if on_progress is None:
            return
        fraction = min(done / total, 1.0) if total and done is not None else None
        if fraction is not None:
            fraction = _overall_fraction(status.get("info_dict") or {}, fraction)
        on_progress(
            DownloadProgress(
                stage="downloading",
                fraction=fraction,
                downloaded_bytes=done,
                total_bytes=int(total) if total else None,
                speed=status.get("speed"),
                eta=status.get("eta"),
            )
        )

    converting: list[str] = []  # the subtitle conversion started and has not finished

    def postprocessor_hook(status: dict[str, Any]) -> None:
        check_cancel()
        if status.get("postprocessor") == "FFmpegSubtitlesConvertor":
            converting[:] = ["yes"] if status.get("status") == "started" else []
        if status.get("postprocessor") in BEFORE_DOWNLOAD:
            return  # not the stage after the download
        if on_progress is not None and status.get("status") == "started":
            on_progress(DownloadProgress("postprocessing", None, None, None, None, None))

    options: dict[str, Any] = {
        "format": QUALITY_FORMATS[quality],
        "paths": {"home": str(workdir), "temp": str(workdir)},
        "outtmpl": {"default": "%(id)s.%(ext)s"},
        "restrictfilenames": True,
        "windowsfilenames": True,
        "noplaylist": True,
        # A playlist is seen, not expanded, and none of its entries is downloaded: this
        # function downloads one video (playlists have a route of their own).
        "extract_flat": "in_playlist",
        "match_filter": one_video,
        "allowed_extractors": _allowed_extractors(allow_generic),
        # yt-dlp's own downloaders only: an external one (ffmpeg fetching a URL, aria2c,
        # rtmpdump) would be refused by the egress guard anyway (media.egress).
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "progress_hooks": [progress_hook],
        "postprocessor_hooks": [postprocessor_hook],
        "logger": ytdl_logger,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "never", "stderr": "never"},
        "socket_timeout": policy.stall_timeout,
        "retries": 3,
        "fragment_retries": 3,
        "continuedl": True,
        "usenetrc": False,
        "cachedir": False,
        "updatetime": False,
        "postprocessors": sponsorblock_options(sponsorblock),
    }
    if ffmpeg_location:
        options["ffmpeg_location"] = ffmpeg_location
    if archive is not None:
        options["download_archive"] = archive
    if policy.rate_limit:
        options["ratelimit"] = policy.rate_limit
    if policy.sleep_interval > 0:
        options["sleep_interval"] = policy.sleep_interval
        options["max_sleep_interval"] = max(policy.sleep_interval, policy.max_sleep_interval)
    # yt-dlp refuses a Content-Length over this before it opens the file; which of the
    # two limits it was is told apart afterwards by the size it refused.
    options["max_filesize"] = min(policy.max_filesize or room.bytes, room.bytes)
    try:
        if policy.cookies_file is not None:
            options["cookiefile"] = str(_private_copy(policy.cookies_file, workdir))
        langs = list(subtitle_langs)
        while True:
            subtitles = subtitle_options(langs, automatic=auto_captions)
            try:
                info = _extract(url, {**options, **subtitles, "postprocessors": [
                    *subtitles.get("postprocessors", []), *options["postprocessors"],
                ]})  # fmt: skip
                break
            except DownloadError as exc:
                failed = _failed_subtitles(exc)
                if not subtitles or not (converting or failed):
                    raise
                # Subtitles are written (and converted) before the video: nothing of it
                # is lost. Again without that language (a few times), else without any.
                logger.info("subtitles left out of %s: %s", url, clean_error(exc))
                retry = not converting and len(langs) < len(subtitle_langs) + 3
                langs = [*langs, f"-{re.escape(failed)}"] if failed and retry else []
                converting.clear()
    except DownloadCancelled:
        if stopped:
            raise stopped[0] from None
        raise Cancelled() from None
    except (DownloadError, OSError) as exc:
        # yt-dlp reports a refused connection as a network error like any other (and
        # retries it); the guard's record says what it really was.
        if refusals():
            raise BlockedAddress() from None
        if is_disk_full(exc):
            # yt-dlp, its ffmpeg merge or our cookies copy: the disk filled up anyway
            # (another writer, or more than announced). The text names a path: dropped.
            # Free counts what the caller's removal of this work folder will free.
            raise DiskFull(
                free=free_bytes(workdir) + _bytes_in(workdir),
                needed=seen[0] + room.reserve if seen[0] else None,
                reserve=room.reserve,
                where="the work folder",
                at_least=True,
            ) from None
        if isinstance(exc, DownloadError):
            raise classify_error(clean_error(exc)) from None
        raise
    if archive is not None and archive.hit is not None:
        raise AlreadyDownloaded(*archive.hit)
    if one_video.saw_playlist or (info and info.get("_type") in ("playlist", "multi_video")):
        raise MediaError(
            "this URL is a playlist, not one video: add it as a playlist instead",
            code="playlist",
            retryable=False,
        )
    downloads = (info or {}).get("requested_downloads") or [{}]
    path = Path(downloads[0]["filepath"]) if downloads[0].get("filepath") else None
    if info is None or path is None or not path.is_file():
        if refusals():
            raise BlockedAddress()
        if ytdl_logger.too_large:
            announced = ytdl_logger.announced
            if policy.max_filesize and (announced or 0) > policy.max_filesize:
                raise _too_large(policy.max_filesize)
            if announced is None and policy.max_filesize and policy.max_filesize <= room.bytes:
                raise _too_large(policy.max_filesize)
            raise room.full(announced)
        if not info:
            raise MediaError("yt-dlp returned nothing for this URL", code="empty", retryable=False)
        raise MediaError("yt-dlp finished without writing a file", code="no_file", retryable=True)
    return DownloadedMedia(
        path=path,
        extractor=str(info.get("extractor_key") or info.get("extractor") or "generic").lower(),
        video_id=str(info["id"]),
        title=str(info.get("track") or info.get("title") or info["id"]),
        artist=info.get("artist") or info.get("creator") or info.get("uploader"),
        webpage_url=str(info.get("webpage_url") or url),
        ext=path.suffix.lstrip(".") or str(info.get("ext") or "bin"),
        metadata=metadata_of(info),
        subtitles=tuple(written_subtitles(info, workdir)),
        chapters=chapters_of(info),
    )


def _extract(url: str, options: dict[str, Any]) -> dict[str, Any] | None:
    with youtube_dl(options) as ydl:
        if options.get("writesubtitles"):
            ydl.add_post_processor(_SafeSubtitleLangs(), when="pre_process")
        info: dict[str, Any] | None = ydl.extract_info(url, download=True)
    return info


_SUBTITLES_FAILED = re.compile(r"Unable to download video subtitles for '([^']*)'")


def _failed_subtitles(exc: DownloadError) -> str | None:
    """The language whose subtitle file yt-dlp could not download or write (in its
    own words), if that is why it failed."""
    found = _SUBTITLES_FAILED.search(clean_error(exc))
    return found.group(1) or "und" if found else None
