"""The downloads' work folders on disk, and what the temp-dir janitor may remove.

Each download works in ``<work root>/<job id>/`` (``$VIDFLEET_DATA_DIR/tmp``): yt-dlp's
partial files, fragments and the cookies copy. A download removes its folder when it
ends, except after a retryable failure, where the next attempt resumes the partial
file. Folders are left behind by downloads whose worker was killed, and by those whose
last attempt failed retryably: :func:`stale_work_folders` lists the folders in which
nothing changed for a while; whether their job is over, the caller asks the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path


def job_id_of(name: str) -> str | None:
    """The job id a work folder's name is (a UUID in its canonical form), else None."""
    try:
        return name if str(uuid.UUID(name)) == name else None
    except ValueError:
        return None


def last_change(path: Path) -> float:
    """The newest mtime of ``path`` and everything under it (symlinks not followed): a
    download appends to a file deep in its folder without touching the folder's own
    mtime.

    Raises:
      OSError: ``path`` itself is gone.
    """
    newest = path.lstat().st_mtime
    if not path.is_dir() or path.is_symlink():
        return newest
    for folder, subfolders, files in os.walk(path):
        for name in (*subfolders, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except FileNotFoundError:
                continue  # removed meanwhile: a change, but one the folder's mtime shows
        newest = max(newest, os.lstat(folder).st_mtime)
    return newest


def stale_work_folders(
    root: Path, *, older_than_s: float, now: float | None = None
) -> dict[str, Path]:
    """The entries of ``root`` named by a job id in which nothing changed for
    ``older_than_s`` seconds: job id -> path. Anything else under ``root`` is not a
    download's and is left out."""
    now = time.time() if now is None else now
    stale: dict[str, Path] = {}
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return stale
    for name in names:
        job_id = job_id_of(name)
        if job_id is None:
            continue
        path = root / name
        try:
            if now - last_change(path) >= older_than_s:
                stale[job_id] = path
        except FileNotFoundError:
            continue  # its download just removed it
    return stale


def remove_work_folder(path: Path) -> None:
    """Remove a work folder (or a stray file or link in its place) and what it holds;
    never follows a link out of it.

    Raises:
      OSError: it could not be removed whole.
    """
    with contextlib.suppress(FileNotFoundError):  # gone meanwhile: nothing left to do
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
