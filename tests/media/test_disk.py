"""media.disk and the move into the library on a real, small tmpfs: a full disk is one
clear error without a path, and no partial file survives it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from media.disk import (
    MB,
    DiskFull,
    check_room,
    disk_usage,
    free_bytes,
    is_disk_full,
    same_filesystem,
    writing,
)
from media.library import stage_in_library
from tests.support import mounted_tmpfs

TMPFS_BYTES = 2 * MB


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", TMPFS_BYTES) as mount_point:
        yield mount_point


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_free_space_is_the_nearest_existing_folders(tmpfs: Path) -> None:
    not_made_yet = tmpfs / "var" / "tmp" / "job"
    assert disk_usage(not_made_yet).total_bytes == TMPFS_BYTES
    assert free_bytes(not_made_yet) == TMPFS_BYTES
    assert same_filesystem(not_made_yet, tmpfs) and not same_filesystem(tmpfs, tmpfs.parent)


def test_check_room_refuses_what_would_eat_into_the_reserve(tmpfs: Path) -> None:
    check_room([tmpfs], TMPFS_BYTES - MB, MB)
    with pytest.raises(DiskFull) as refused:
        check_room({"the library": tmpfs / "library"}, TMPFS_BYTES - MB + 1, MB)
    error = refused.value
    assert error.code == "disk_full" and error.retryable is False
    assert error.message.startswith("not enough disk space in the library: 2.0 MB free")
    assert "2.0 MB needed" in error.message and "1.0 MB is the reserve" in error.message
    assert str(tmpfs) not in error.message and "/" not in error.message


def test_a_full_disk_is_recognised_however_it_is_wrapped() -> None:
    from yt_dlp.utils import DownloadError

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/secret/x.part")
    except OSError as cause:
        wrapped = DownloadError("ERROR: unable to write data", exc_info=(OSError, cause, None))
    assert is_disk_full(wrapped)
    assert is_disk_full(DownloadError("ERROR: Postprocessing: No space left on device"))
    chained = RuntimeError("merge failed")
    chained.__cause__ = OSError(errno.ENOSPC, "full")
    assert is_disk_full(chained)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(DownloadError("ERROR: HTTP Error 507: Insufficient Storage"))


def test_writing_removes_the_partial_file_when_the_disk_fills_up(tmpfs: Path) -> None:
    target = tmpfs / "thumb.webp"
    with (
        pytest.raises(DiskFull) as full,
        writing(target, needed=3 * MB) as path,
        path.open("wb") as out,
    ):
        for _ in range(3):
            out.write(b"\0" * MB)
    assert not target.exists() and files_under(tmpfs) == []
    assert free_bytes(tmpfs) == TMPFS_BYTES, "the partial file's space is free again"
    assert "2.0 MB free, 3.0 MB needed" in full.value.message
    assert str(tmpfs) not in full.value.message


def test_writing_removes_the_partial_file_on_any_failure(tmpfs: Path) -> None:
    target = tmpfs / "cache.mp4"
    with pytest.raises(ValueError, match="encoder broke"), writing(target) as path:
        path.write_bytes(b"half")
        raise ValueError("encoder broke")
    assert not target.exists()


def test_a_move_that_fills_the_library_leaves_no_partial_copy(tmp_path: Path, tmpfs: Path) -> None:
    source = tmp_path / "work" / "video.mp4"  # on the normal disk: the move is a copy
    source.parent.mkdir()
    source.write_bytes(os.urandom(3 * MB))
    with pytest.raises(DiskFull) as full:
        stage_in_library(source, tmpfs, PurePosixPath("Artist/video_[x-1].mp4"))
    assert files_under(tmpfs) == [], "a partial copy was left in the library"
    assert free_bytes(tmpfs) == TMPFS_BYTES
    assert source.stat().st_size == 3 * MB, "the source stays for the caller to remove"
    assert "in the library" in full.value.message and str(tmpfs) not in full.value.message


def test_a_move_that_fits_is_staged_across_filesystems(tmp_path: Path, tmpfs: Path) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(b"\1" * 1000)
    staged = stage_in_library(source, tmpfs, PurePosixPath("Artist/video_[x-1].mp4"))
    assert staged.partial.name == ".video_[x-1].mp4.partial" and not source.exists()
    staged.publish()
    assert staged.final.read_bytes() == b"\1" * 1000 and not staged.partial.exists()
