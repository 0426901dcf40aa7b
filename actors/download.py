"""download_video: fetch one URL with yt-dlp, probe it, file it in the library.

Disk space is checked at each step that needs it (before starting, by yt-dlp against
the announced size, before the copy into the library) against the reserve
``VIDFLEET_MIN_FREE_MB``; a full disk fails the job at once with ``disk_full``, not
retried (:mod:`media.disk`), and its partial files are removed with the work folder.
"""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from actors.analyze import analyze_later
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from actors.library_places import place_video
from actors.limits import retry_delay_ms, site_allows_a_start
from actors.refresh_hooks import announce
from actors.retry_policy import Postponed, is_retryable
from actors.sidecars import remove_video_sidecars, write_video_sidecars
from db import library
from db.models import JobKind
from db.queues import Queue
from db.refresh_hooks import ChangeEvent, VideoChange
from db.settings import get_settings
from media.disk import DiskFull, check_room, free_bytes, is_disk_full, same_filesystem
from media.download import (
    AlreadyDownloaded,
    DownloadedMedia,
    DownloadPolicy,
    DownloadProgress,
)
from media.download import download_video as fetch
from media.egress import install_egress_guard
from media.errors import MediaError
from media.ffmpeg import ffmpeg_path
from media.isolation import run_isolated
from media.library import StagedFile, remove_from_library, stage_in_library
from media.mediainfo import MediaInfo
from media.probe import probe_file
from media.subtitles import SubtitleFile, extract_embedded, subtitle_path
from media.urls import parse_url

logger = logging.getLogger(__name__)
settings = get_settings()

# The share of the overall progress that the download itself takes.
DOWNLOAD_SHARE = 0.95


def _policy() -> DownloadPolicy:
    # Built at call time from the module's settings, which a test may swap.
    return DownloadPolicy(
        rate_limit=settings.download_rate_limit or None,
        sleep_interval=settings.sleep_interval,
        max_sleep_interval=settings.max_sleep_interval,
        stall_timeout=settings.stall_timeout,
        cookies_file=settings.cookies_file,
        max_filesize=settings.max_filesize or None,
        min_free_bytes=settings.min_free_bytes,
    )


@job_actor(
    kind=JobKind.download,
    queue_name=Queue.interactive,
    slot="downloads",  # run only while holding a download slot (actors.slot_gate)
    time_limit=settings.download_time_limit * 1000,
    notify_shutdown=True,  # SIGTERM interrupts the download, which goes back to the queue
)
def download_video(job_id: str) -> None:
    job = current_job()
    params = job.params
    # The form only: where the download may connect is the egress guard's to decide,
    # connection by connection, in the download's own process.
    url = parse_url(params["url"])
    site = urlsplit(url).hostname or ""
    if not site_allows_a_start(site):
        raise Postponed(f"waiting: the per-minute limit for {site}", retry_delay_ms())
    job.result = result = _download(job, url)
    if not result.get("already_in_library"):
        write_video_sidecars(result["video_id"])
        analyze_later(result["video_id"], after_job=job.id)


def _download(job: JobContext, url: str) -> dict[str, Any]:
    params = job.params
    workdir = settings.tmp_dir / job.id

    def on_progress(update: DownloadProgress) -> None:
        job.report(
            stage=update.stage,
            progress=None if update.fraction is None else update.fraction * DOWNLOAD_SHARE,
            downloaded_bytes=update.downloaded_bytes,
            total_bytes=update.total_bytes,
            speed=update.speed,
            eta=update.eta,
        )

    def already_have(extractor: str, video_id: str) -> bool:
        with job.sessions() as session:
            return library.find_video(session, extractor, video_id) is not None

    try:
        # A disk already at its reserve fails the job before anything is written.
        places = {"the work folder": workdir, "the library": settings.media_root}
        check_room(places, 0, settings.min_free_bytes)
        workdir.mkdir(parents=True, exist_ok=True)
        job.report(stage="downloading", progress=None)
        # In a process group of its own: a cancel, a time limit or a shutdown stops
        # yt-dlp together with any ffmpeg it started.
        callbacks: dict[str, Any] = {"on_progress": on_progress}
        if not params.get("force"):
            callbacks["already_have"] = already_have
        downloaded = run_isolated(
            fetch,
            kwargs={
                "url": url,
                "workdir": workdir,
                "quality": params.get("quality") or "best",
                "ffmpeg_location": ffmpeg_path(),
                "allow_generic": settings.enable_generic_extractor,
                "policy": _policy(),
                "library": settings.media_root,
                "subtitle_langs": settings.subtitle_langs,
                "auto_captions": settings.auto_captions,
                "sponsorblock": settings.sponsorblock,
            },
            callbacks=callbacks,
            should_cancel=job.cancelled,
            setup=partial(install_egress_guard, allow_private=settings.allow_private_urls),
            memory_limit=settings.download_memory_limit,
        )
        job.raise_if_cancelled()
        job.report(stage="probing", progress=DOWNLOAD_SHARE)
        info = probe_file(downloaded.path)
        subtitles = [*downloaded.subtitles, *_embedded_subtitles(downloaded, workdir)]
        job.raise_if_cancelled()
        video_id = _file_in_library(job, downloaded, info, url, subtitles)
    except AlreadyDownloaded as known:
        # The same video under another URL form: nothing to download.
        shutil.rmtree(workdir, ignore_errors=True)
        with job.sessions() as session:
            video = library.find_video(session, known.extractor, known.video_id)
            assert video is not None
            return {"video_id": video.id, "already_in_library": True}
    except BaseException as exc:
        if isinstance(exc, OSError) and is_disk_full(exc):
            # ENOSPC outside the media steps (making the work folder): the same reason,
            # without the path the OSError names.
            shutil.rmtree(workdir, ignore_errors=True)
            raise DiskFull(free=free_bytes(workdir), where="the work folder") from exc
        if not is_retryable(exc):
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return {"video_id": video_id}


def _embedded_subtitles(downloaded: DownloadedMedia, workdir: Path) -> list[SubtitleFile]:
    """The text subtitle streams of the file, as WebVTT, in the languages asked for
    and not written by yt-dlp already; none when that fails (the video goes on)."""
    if not settings.subtitle_langs:
        return []
    try:
        return extract_embedded(
            downloaded.path,
            workdir,
            settings.subtitle_langs,
            ffmpeg=ffmpeg_path(),
            have=[sub.lang for sub in downloaded.subtitles],
        )
    except Exception:
        logger.exception("the subtitle streams of %s were not extracted", downloaded.video_id)
        return []


def _stage_subtitles(
    subtitles: list[SubtitleFile], relative: PurePosixPath
) -> list[tuple[SubtitleFile, StagedFile]]:
    """Each subtitle file staged beside the video's place (as the video is); one that
    cannot be (a full disk) is logged and left out: subtitles never fail a video."""
    staged = []
    for sub in subtitles:
        try:
            place = subtitle_path(relative, sub.lang)
            staged.append((sub, stage_in_library(sub.path, settings.media_root, place)))
        except (OSError, ValueError, MediaError) as exc:
            logger.warning("subtitles %s of %s left out: %s", sub.lang, relative, exc)
    return staged


def _publish_subtitles(
    staged: list[tuple[SubtitleFile, StagedFile]], relative: PurePosixPath
) -> list[dict[str, Any]]:
    """Rename the staged subtitle files to their places; the row's list of those that
    made it (a failed rename is logged and left out)."""
    published = []
    for sub, file in staged:
        try:
            file.publish()
        except (OSError, MediaError) as exc:
            logger.warning("subtitles %s of %s left out: %s", sub.lang, relative, exc)
            continue
        place = subtitle_path(relative, sub.lang).as_posix()
        published.append({"lang": sub.lang, "path": place, "automatic": sub.automatic})
    return published


def _file_in_library(
    job: JobContext,
    downloaded: DownloadedMedia,
    info: MediaInfo,
    url: str,
    subtitles: list[SubtitleFile],
) -> int:
    """Add the file and its ``Video`` row together: the file is staged beside its final
    place first, then renamed inside the transaction and removed again if the commit
    fails, so the library never holds a file without a row or a row without a file.
    Its subtitle files go the same way beside it (``<stem>.<lang>.vtt``). With
    ``force`` a video already in the library gets the new file, subtitles and metadata
    (its old subtitle files that the new ones do not replace are removed)."""
    params = job.params
    artist = params.get("artist") or downloaded.artist
    title = params.get("title") or downloaded.title
    with job.sessions() as session:
        existing = library.find_video(session, downloaded.extractor, downloaded.video_id)
        relative = place_video(
            session,
            settings.media_root,
            artist=artist,
            title=title,
            video_id=downloaded.video_id,
            ext=downloaded.ext,
            replacing=existing.path if existing is not None else None,
        )
    if not same_filesystem(downloaded.path, settings.media_root):
        # The move is a copy there: the file must fit beside the reserve (a rename on
        # one filesystem needs no room).
        size = downloaded.path.stat().st_size
        check_room({"the library": settings.media_root}, size, settings.min_free_bytes)
    staged = stage_in_library(downloaded.path, settings.media_root, relative)
    staged_subtitles = _stage_subtitles(subtitles, relative)
    try:
        with job.sessions() as session:
            existing = library.find_video(session, downloaded.extractor, downloaded.video_id)
            if existing is not None and not params.get("force"):
                return existing.id  # filed already: a redelivery after the commit
            replaced = existing.path if existing is not None else None
            old_subtitles = [sub["path"] for sub in (existing.subtitles or [])] if existing else []
            holder = library.video_at(session, relative.as_posix())
            if holder is not None and holder is not existing:
                # Only names that sanitise alike get here; the unique index on the path
                # backs this check up, and the other video's file stays untouched.
                raise MediaError(
                    f"another library entry (video {holder.id}) has the file name {relative}",
                    code="path_conflict",
                    retryable=False,
                )
            video = library.save_video(
                session,
                library.NewVideo(
                    title=title,
                    artist=artist,
                    source_url=url,
                    extractor=downloaded.extractor,
                    extractor_id=downloaded.video_id,
                    path=relative.as_posix(),
                    size=staged.partial.stat().st_size,
                    duration=info.duration,
                    width=info.width,
                    height=info.height,
                    vcodec=info.vcodec,
                    acodec=info.acodec,
                    container=info.container,
                    artists=downloaded.metadata.artists,
                    album=downloaded.metadata.album,
                    release_year=downloaded.metadata.release_year,
                    premiered=downloaded.metadata.premiered,
                    genres=downloaded.metadata.genres,
                    director=downloaded.metadata.director,
                    chapters=tuple(chapter.as_json() for chapter in downloaded.chapters),
                ),
                replacing=existing,
            )
            staged.publish()
            # Beside the video, as the video itself: removed again if the commit fails.
            published = _publish_subtitles(staged_subtitles, relative)
            video.subtitles = published or None
            try:
                session.commit()
            except BaseException:
                staged.final.unlink(missing_ok=True)
                for sub in published:
                    remove_from_library(settings.media_root, PurePosixPath(sub["path"]))
                raise
            if replaced is not None and replaced != relative.as_posix():
                remove_from_library(settings.media_root, PurePosixPath(replaced))
                remove_video_sidecars(replaced)
            kept = {sub["path"] for sub in published}
            for path in old_subtitles:
                if path not in kept:
                    remove_from_library(settings.media_root, PurePosixPath(path))
            event = ChangeEvent.added if existing is None else ChangeEvent.replaced
            announce([VideoChange(event, video.id, title, artist, relative.as_posix())])
            return video.id
    finally:
        staged.discard()
        for _, file in staged_subtitles:
            file.discard()
