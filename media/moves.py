"""Moving a video's file to a new name together with every file beside it that shares
its stem (its NFO, ``-thumb.jpg``, subtitles ``<stem>.<lang>.vtt``...), each keeping
its own suffix, without ever overwriting or deleting a file.

A move can be cut short at any point (a SIGKILL) and is done again from what is on
disk: the old file there and no new one, it moves; the old one gone and the new one
there, it only moves what is left beside the old name; both names one file (a cut
between the link and the unlink below), it drops the old name; both there and two
files, it refuses (:class:`MoveConflict`) and touches nothing more. So running it again
always converges.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Collection
from pathlib import Path

from media.errors import MediaError
from media.names import stem_of

#: Tries to put a name into a folder that a concurrent move may remove while empty.
_FOLDER_TRIES = 3
#: Filesystems without hard links answer these to ``link``: they get check-then-rename.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class MoveConflict(MediaError):
    """A file that is not the one being moved already holds the new name."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"another file already has the name {name!r}: nothing of it was overwritten; "
            "move or remove one of the two, then run the relayout again",
            code="name_taken",
            retryable=False,
        )


def move_with_sidecars(source: Path, target: Path, *, others: Collection[str] = ()) -> bool:
    """Rename the video file ``source`` to ``target`` and every entry beside ``source``
    whose stem (:func:`media.names.stem_of`) is ``source``'s, but the names in
    ``others`` (other videos' files), to ``target``'s stem with its own suffix; then
    remove ``source``'s folder if that left it empty. Both paths are absolute, in one
    filesystem; ``target``'s name must end with ``source``'s suffix.

    Returns True when it moved the video file, False when it found it moved already.

    Raises:
      MoveConflict: a different file holds a new name (nothing is overwritten).
      MediaError: neither ``source`` nor ``target`` exists (``missing``).
      OSError: the filesystem refused (no room, no permission, another filesystem).
    """
    old_stem = stem_of(source.name)
    suffix = source.name[len(old_stem) :]
    if not target.name.endswith(suffix):
        raise ValueError(f"{target.name!r} does not end with {suffix!r}")
    new_stem = target.name[: len(target.name) - len(suffix)]
    there = os.path.lexists(source)
    if there and os.path.lexists(target) and not _same_file(source, target):
        raise MoveConflict(target.name)
    if not there and not os.path.lexists(target):
        raise MediaError("its file is missing: nothing to move", code="missing", retryable=False)
    # The sidecars first: if the move is cut short, the video's own name still tells
    # what is left to do.
    for name in sorted(_entries(source.parent)):
        if name == source.name or name in others or stem_of(name) != old_stem:
            continue
        _rename_no_replace(
            source.parent / name, target.parent / f"{new_stem}{name[len(old_stem) :]}"
        )
    if there:
        _rename_no_replace(source, target)
    if source.parent != target.parent:
        # Not empty (another video, a hidden file) or removed already: it stays or is gone.
        with contextlib.suppress(FileNotFoundError, OSError):
            source.parent.rmdir()
    return there


def _entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samestat(os.lstat(first), os.lstat(second))
    except FileNotFoundError:
        return False


def _rename_no_replace(source: Path, target: Path) -> None:
    """Give ``source``'s file the name ``target``, never replacing another file there.

    Written by hand: ``os.rename`` replaces a file in its way, and Python has no
    ``renameat2(RENAME_NOREPLACE)``; ``link`` refuses an existing name atomically, and
    the old name goes once the new one holds the file (both names one file in between,
    which the next try recognises). On a filesystem without hard links, the name is
    checked, then the file renamed.

    Raises:
      MoveConflict: another file holds ``target``.
    """
    for attempt in range(_FOLDER_TRIES):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            if not _same_file(source, target):
                raise MoveConflict(target.name) from None
        except FileNotFoundError:
            if not os.path.lexists(source):
                raise
            if attempt + 1 == _FOLDER_TRIES:
                raise
            continue  # the folder was removed under us by another move, while empty
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if os.path.lexists(target):
                raise MoveConflict(target.name) from None
            os.rename(source, target)
            return
        os.unlink(source)
        return
