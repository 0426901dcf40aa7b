"""Disk space, managed rather than discovered: how much a folder's filesystem has free,
a check that refuses work which would eat into a reserve, and the translation of a full
disk (``ENOSPC``, ``EDQUOT``) at any point of a write into one clear error, ``DiskFull``,
after the partial file is gone.

``disk_full`` is not retried: the job fails at once, and the person retries it after
freeing space. A full disk does not empty itself within a backoff, and retrying would
only refill it with partial files, so it must never loop (fast or slow). The message
says how much is free and how much is needed, in MB, and never names a server path.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from media.errors import MediaError

MB = 1024**2
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# What a full disk looks like once a tool has turned the OSError into text: yt-dlp's
# DownloadError ("unable to write data: [Errno 28] No space left on device"), FFmpeg's
# stderr in a postprocessing error.
DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


@dataclass(frozen=True)
class DiskUsage:
    free_bytes: int  # what an unprivileged writer may still use
    total_bytes: int


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a work folder not made yet lives
    on its parent's filesystem)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_usage(path: Path) -> DiskUsage:
    """Free and total bytes of the filesystem that holds (or would hold) ``path``."""
    stats = os.statvfs(_existing(path))
    return DiskUsage(
        free_bytes=stats.f_bavail * stats.f_frsize, total_bytes=stats.f_blocks * stats.f_frsize
    )


def free_bytes(path: Path) -> int:
    return disk_usage(path).free_bytes


def same_filesystem(first: Path, second: Path) -> bool:
    """Whether a rename from one to the other stays on one filesystem (and so needs no
    room of its own)."""
    return os.stat(_existing(first)).st_dev == os.stat(_existing(second)).st_dev


def _mb(size: int) -> str:
    return f"{max(size, 0) / MB:.1f} MB"


class DiskFull(MediaError):
    """Not enough disk space for a step, found before it or by ``ENOSPC`` during it.

    Parameters:
      free: bytes free when it was found.
      needed: bytes the step needs, the reserve included (None: unknown).
      reserve: bytes kept free on purpose (VIDFLEET_MIN_FREE_MB).
      where: which place ran out ("the library"), never a path.
      at_least: ``needed`` is a lower bound (a stream without a length).
    """

    def __init__(
        self,
        *,
        free: int,
        needed: int | None = None,
        reserve: int = 0,
        where: str | None = None,
        at_least: bool = False,
    ) -> None:
        place = f" in {where}" if where else ""
        if needed is None:
            wanted = "more needed"
        else:
            wanted = f"{'at least ' if at_least else ''}{_mb(needed)} needed"
            if reserve:
                wanted += f" (of which {_mb(reserve)} is the reserve kept free)"
        super().__init__(
            f"not enough disk space{place}: {_mb(free)} free, {wanted}; "
            "free some space, then retry",
            code="disk_full",
            retryable=False,
        )
        self.free = free
        self.needed = needed


def check_room(paths: Mapping[str, Path] | Iterable[Path], needed: int, reserve: int) -> None:
    """Refuse a step that would leave less than ``reserve`` bytes free.

    Parameters:
      paths: folders whose filesystems must each have ``needed + reserve`` bytes free;
        a mapping names them for the message (``{"the library": root}``).

    Raises:
      DiskFull: one of the filesystems has less.
    """
    places = paths.items() if isinstance(paths, Mapping) else ((None, path) for path in paths)
    for where, path in places:
        free = free_bytes(path)
        if free < needed + reserve:
            raise DiskFull(free=free, needed=needed + reserve, reserve=reserve, where=where)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a full disk or an exhausted quota."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(current).lower() for text in DISK_FULL_TEXTS):
            return True
        # yt-dlp's DownloadError keeps the original exception in ``exc_info``.
        exc_info = getattr(current, "exc_info", None)
        wrapped = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
        current = wrapped or current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def writing(path: Path, *, needed: int | None = None, where: str | None = None) -> Iterator[Path]:
    """Write ``path`` under this: if anything fails, the partial file is removed at
    once, and a full disk is raised as ``DiskFull`` (without the path the OSError
    names). For every writer of big files: downloads' staging, thumbnails, the stream
    cache.

    Parameters:
      needed: the file's full size, when known, for the message.

    Raises:
      DiskFull: the filesystem filled up while writing.
    """
    try:
        yield path
    except BaseException as exc:
        # A partial file is never useful, and on a full disk it is what fills it.
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull(free=free_bytes(path.parent), needed=needed, where=where) from exc
        raise
