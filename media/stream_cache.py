"""The stream cache on disk: finished transcodes and HLS segments, and its janitor.

Layout under the cache root (``$VIDFLEET_DATA_DIR/cache``)::

    streams/<key>/<quality>.<format>     a whole transcode, start to end
    hls/<key>/<quality>/<n>.ts           one HLS segment

where ``<key>`` is ``<video id>-<size>-<mtime ns>`` of the library file
(:func:`source_key`): a video id that a new video takes after a deletion, or a file
replaced in place, never meets the old entries.

Every entry is written under a hidden temporary name in its folder and renamed into
place when complete, so a reader never sees half an entry; a hit touches the entry's
mtime, so the janitor's "least recently used" is the oldest mtime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

KINDS = ("streams", "hls")
PARTIAL_MAX_AGE_S = 3600.0  # a temporary file this old belongs to no live writer


@dataclass(frozen=True)
class Entry:
    path: Path
    key: str
    size: int
    used: float  # mtime


def source_key(video_id: int, source: os.stat_result) -> str:
    """What cache entries of a library file are filed under."""
    return f"{video_id}-{source.st_size}-{source.st_mtime_ns}"


def stream_entry(root: Path, key: str, quality: str, format: str) -> Path:
    return root / "streams" / key / f"{quality}.{format}"


def hls_folder(root: Path, key: str, quality: str) -> Path:
    return root / "hls" / key / quality


def partial_name(target: Path) -> Path:
    """A temporary name next to ``target``, hidden from readers and unique per writer."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")


def is_partial(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".part")


def entries(root: Path) -> tuple[list[Entry], list[Path]]:
    """The complete entries, and the abandoned temporary files (older than an hour)."""
    found: list[Entry] = []
    stale: list[Path] = []
    now = time.time()
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            for dirpath, _dirs, files in os.walk(folder):
                for name in files:
                    path = Path(dirpath) / name
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue
                    if is_partial(path):
                        if now - stat.st_mtime > PARTIAL_MAX_AGE_S:
                            stale.append(path)
                        continue
                    found.append(Entry(path, folder.name, stat.st_size, stat.st_mtime))
    return found, stale


def remove_entries_of(root: Path, video_id: int) -> int:
    """Delete every cache entry of video ``video_id`` (each of its files' keys, whole
    transcodes and HLS segments alike, complete or being written); how many folders
    went. A writer still busy in one loses its file: it fails its rename, not the
    cache. Whatever could not be removed goes with the next :func:`sweep` (no row, so
    no live key)."""
    removed = 0
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for folder in base.glob(f"{int(video_id)}-*"):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


@dataclass(frozen=True)
class Sweep:
    removed: int
    freed_bytes: int
    kept_bytes: int


def sweep(root: Path, *, max_bytes: int, live_keys: Iterable[str]) -> Sweep:
    """Delete the entries of files no longer in the library (``live_keys``: the
    :func:`source_key` of each) and abandoned temporary files, then the least recently
    used entries until at most ``max_bytes`` remain."""
    live = set(live_keys)
    found, stale = entries(root)
    doomed = [entry for entry in found if entry.key not in live]
    kept = sorted((e for e in found if e.key in live), key=lambda e: e.used, reverse=True)
    total = 0
    for entry in kept:
        total += entry.size
        if total > max_bytes:
            doomed.append(entry)
    removed = freed = 0
    for path in [*(entry.path for entry in doomed), *stale]:
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            removed += 1
            freed += size
    kept_bytes = sum(entry.size for entry in kept) - sum(
        entry.size for entry in doomed if entry.key in live
    )
    _remove_empty_folders(root)
    return Sweep(removed=removed, freed_bytes=freed, kept_bytes=kept_bytes)


def _remove_empty_folders(root: Path) -> None:
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), reverse=True):
            if Path(dirpath) != base:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only succeeds when empty
