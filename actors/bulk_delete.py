"""One part of a bulk delete (``POST /api/videos/bulk/delete``, ``DELETE
/api/videos/{id}``): about 20 videos, each removed whole, one after another
(:func:`actors.batch_part.run_part`), on the ``bulk`` queue.

A video goes in this order: its file and its subtitle files, only if every path of
the row lies under the media root (:func:`media.library.delete_library_file`; a row
that leads out of it, through ``..`` or a symlink, fails its item and nothing of it is
deleted, its row left for someone to look at); its thumbnails; its sidecars (the NFO
and ``-thumb.jpg`` of the kodi and jellyfin layouts, and with the folder's last video
its artist's files and the emptied folder: :mod:`actors.sidecars`); its stream-cache
entries; last its row, so the download archive (the library itself) forgets it and its
URL can be downloaded again, and the media servers and webhook are told
(:mod:`actors.refresh_hooks`). A file already gone is no error. A part that dies
half-way is retried whole and redoes nothing harmful: a video whose row is still there
is deleted again (what is gone stays gone), one whose row is gone is skipped.
"""

from __future__ import annotations

import contextlib
import shutil

from sqlalchemy import select

from actors.batch_part import run_part
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from actors.refresh_hooks import announce
from actors.sidecars import remove_video_sidecars
from db import library
from db.models import JobKind, Video
from db.queues import Queue
from db.refresh_hooks import ChangeEvent, changes_of
from db.settings import get_settings
from media.errors import MediaError
from media.library import delete_library_file, library_entry
from media.stream_cache import remove_entries_of

settings = get_settings()


@job_actor(kind=JobKind.delete_chunk, queue_name=Queue.bulk, time_limit=10 * 60_000)
def delete_videos(job_id: str) -> None:
    job = current_job()
    run_part(job, lambda video_id: delete_video(job, int(video_id)), stage="deleting")


def delete_video(job: JobContext, video_id: int) -> bool:
    """Delete one video whole; False when its row was gone already (skipped).

    Raises:
      MediaError: its file lies outside the media root (nothing deleted), or a file
        or folder of it could not be deleted (the reason, without the path).
    """
    with job.sessions() as session:
        row = session.execute(
            select(Video.path, Video.subtitles).where(Video.id == video_id)
        ).first()
        # Read now: the media servers and the webhook hear of it once the row is gone.
        removal = changes_of(session, ChangeEvent.removed, [video_id])
    if row is None:
        return False
    relative, subtitles = row
    subtitle_files = [str(sub.get("path")) for sub in subtitles or [] if isinstance(sub, dict)]
    for path in subtitle_files:
        library_entry(settings.media_root, path)  # OutsideLibrary before anything goes
    try:
        delete_library_file(settings.media_root, relative)
        for path in subtitle_files:
            delete_library_file(settings.media_root, path)
        # None: never analysed, or deleted by an earlier try (or another batch).
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(settings.thumbnails_dir / str(video_id))
    except OSError as exc:
        # A reason to read, not a path: the summary goes to any API client.
        raise MediaError(
            f"could not delete it: {exc.strerror or type(exc).__name__}",
            code="delete_failed",
            retryable=False,
        ) from exc
    remove_video_sidecars(relative)  # its NFO and -thumb.jpg; artist.nfo if last
    remove_entries_of(settings.stream_cache_dir, video_id)
    with job.sessions() as session:
        library.remove_video(session, video_id)
        session.commit()
    announce(removal)
    return True
