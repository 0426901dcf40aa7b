"""The relayout of the library (``POST /api/library/relayout``): every video, and the
files beside it, renamed in place to the current names, on the ``bulk`` queue.

``relayout_library`` (a ``relayout`` job) plans on a worker
(:func:`actors.relayout_plan.plan_moves`). A dry run ends there, its result the moves
(``{video_id, from, to}``, the first :data:`MAX_LISTED`) and their ``total``; nothing is
touched. Otherwise the job hands the plan to parts of about 20 moves
(:func:`db.job_service.hand_to_parts`), ``relayout_chunk`` jobs that any worker takes,
and ends with their summary, as bulk thumbnails do.

A part moves each video in turn (:func:`actors.batch_part.run_part`): its file and its
sidecars (:func:`media.moves.move_with_sidecars`: nothing overwritten, nothing
deleted), then at once its row (``path``, and the paths of its ``subtitles``). What the
part finds decides what is left to do, so a part retried after its worker was killed at
any point converges: the row already at the new path, skipped; the file moved but not
the row, the row follows; a new name held by another file, or the video moved or
deleted since the plan, fails that item with its reason (a relayout run again plans it
anew). After each move the kodi/jellyfin sidecars are brought up to date (the NFO names
the new ``-thumb.jpg``; the artist's files follow to the new folder and leave the old
one with its last video: :mod:`actors.sidecars`) and the media servers and webhook hear
of it (``video.moved``, :mod:`actors.refresh_hooks`).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select

from actors import stores
from actors.batch_part import run_part
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from actors.refresh_hooks import announce
from actors.relayout_plan import plan_moves
from actors.sidecars import remove_video_sidecars, write_video_sidecars
from db import job_service
from db.models import JobKind, Video
from db.queues import Queue
from db.refresh_hooks import ChangeEvent, changes_of
from db.settings import get_settings
from media.errors import MediaError
from media.library import OutsideLibrary, library_entry
from media.moves import move_with_sidecars
from media.names import stem_of

settings = get_settings()

#: The most moves a dry run's result lists (``total`` counts them all). The result is in
#: every event of the job, which every socket subscribed to all jobs gets: about 150
#: bytes a move, so 200 keep it near 30 kB.
MAX_LISTED = 200


@job_actor(kind=JobKind.relayout, queue_name=Queue.bulk, time_limit=30 * 60_000)
def relayout_library(job_id: str) -> None:
    job = current_job()
    job.report(stage="planning", progress=None)
    with job.sessions() as session:
        moves = plan_moves(session, settings.media_root, check=job.raise_if_cancelled)
    params = job.params
    if params.get("dry_run"):
        job.result = {
            "moves": [move.as_dict() for move in moves[:MAX_LISTED]],
            "total": len(moves),
        }
        return
    if not moves:
        job.result = {"done": 0, "failed": [], "failed_count": 0, "skipped": 0, "cancelled": 0}
        return
    parts: list[tuple[str, str, dict[str, Any]]] = [
        (
            JobKind.relayout_chunk,
            Queue.bulk,
            {"items": [m.video_id for m in part], "moves": [m.as_dict() for m in part]},
        )
        for part in job_service.parts(moves)
    ]
    job.raise_if_cancelled()
    with stores.engine().connect() as connection:
        outbox = job_service.hand_to_parts(
            connection,
            job.id,
            attempt=job.job["attempts"],
            params={**params, "items": len(moves)},
            stage="moving",
            children=parts,
        )
    if outbox is None:
        return  # the lifeline took the job over: this attempt's end is void anyway
    job.handed_to_parts = True
    # Not delivered (Redis away): the parts are queued in the database, and the
    # lifeline sends their messages.
    stores.courier().deliver(outbox)


@job_actor(kind=JobKind.relayout_chunk, queue_name=Queue.bulk, time_limit=10 * 60_000)
def move_videos(job_id: str) -> None:
    job = current_job()
    moves = {int(move["video_id"]): move for move in job.params["moves"]}
    run_part(job, lambda video_id: move_video(job, moves[int(video_id)]), stage="moving")


def move_video(job: JobContext, move: dict[str, Any]) -> bool:
    """Move one video to its planned path, its files then its row; False (skipped) when
    its row is gone or already there.

    Raises:
      MediaError: the new name is another file's, the video was moved since the plan,
        its file is missing or lies outside the media root, or the filesystem refused
        (the reason, without the path of the media root).
    """
    video_id, old, new = int(move["video_id"]), str(move["from"]), str(move["to"])
    with job.sessions() as session:
        path = session.scalar(select(Video.path).where(Video.id == video_id))
        if path is None:
            return False  # deleted since the plan
        if path not in (old, new):
            raise MediaError(
                "it was moved since the relayout was planned: run the relayout again",
                code="moved_meanwhile",
                retryable=False,
            )
        holder = session.scalar(select(Video.id).where(Video.path == new, Video.id != video_id))
        if holder is not None:
            raise MediaError(
                f"another library entry (video {holder}) has the path {new!r}",
                code="name_taken",
                retryable=False,
            )
        folder = PurePosixPath(old).parent.as_posix()
        in_folder = Video.path.startswith(f"{folder}/", autoescape=True)
        others = {
            other.rsplit("/", 1)[-1]
            for other in session.scalars(select(Video.path).where(in_folder, Video.id != video_id))
        }
    try:
        source = library_entry(settings.media_root, old)
        target = library_entry(settings.media_root, new)
    except OutsideLibrary:
        raise MediaError(
            "its file lies outside the media root: nothing was moved",
            code="outside_library",
            retryable=False,
        ) from None
    if path == new and os.path.lexists(source):
        return False  # moved and filed by an earlier try; that name is another file now
    try:
        move_with_sidecars(source, target, others=others)
    except OSError as exc:
        # A reason to read, not a path: the summary goes to any API client.
        raise MediaError(
            f"could not move it: {exc.strerror or type(exc).__name__}",
            code="move_failed",
            retryable=False,
        ) from exc
    if path == new:
        _after_move(job, video_id, old)  # an earlier try filed it and may have died here
        return False
    with job.sessions() as session:
        video = session.get(Video, video_id)
        if video is None:
            return False
        video.path = new
        if video.subtitles:
            video.subtitles = [_renamed(track, old, new) for track in video.subtitles]
        session.commit()
    _after_move(job, video_id, old)
    return True


def _after_move(job: JobContext, video_id: int, old: str) -> None:
    """What else shows a move, none of it failing the item: the NFO names the new
    ``-thumb.jpg``, the artist's files are written in the new folder and leave the old
    one (with the folder) when its last video left, and the media servers hear of it."""
    write_video_sidecars(video_id)
    remove_video_sidecars(old)
    with job.sessions() as session:
        moved = changes_of(session, ChangeEvent.moved, [video_id])
    announce(moved)


def _renamed(track: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A subtitle track's entry after its video moved from ``old`` to ``new``: a file
    beside the old one with the old stem has the new stem, and keeps its suffix."""
    path = PurePosixPath(str(track.get("path", "")))
    before, after = PurePosixPath(old), PurePosixPath(new)
    old_stem = stem_of(before.name)
    if path.parent != before.parent or stem_of(path.name) != old_stem:
        return track
    new_stem = after.name[: len(after.name) - len(before.name) + len(old_stem)]
    return {**track, "path": (after.parent / f"{new_stem}{path.name[len(old_stem) :]}").as_posix()}
