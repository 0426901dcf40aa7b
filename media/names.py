"""File and folder names people can read, safe on every filesystem and share.

Unicode names, NFC-normalised, with only what a filesystem or an SMB/NFS share cannot
hold replaced: separators by look-alikes (``M/V`` becomes ``M⧸V``, as yt-dlp's
non-restricted names do), the characters Windows refuses (``<>:"|?*``) by their
full-width forms, control and bidirectional-override characters removed, trailing dots
and spaces dropped, Windows' reserved device names (``CON``, ``COM1`` …) given a ``_``.
Every component is at most 255 bytes of UTF-8, cut on a character boundary.

Written by hand: yt-dlp's ``sanitize_filename`` either keeps ASCII only (restricted) or
leaves reserved device names, byte lengths and normalisation alone; pathvalidate would
do most of it but replaces with one fixed character and knows no case-insensitive
uniqueness, which a library on a Windows or macOS share needs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

#: The longest a path component may be on ext4, NTFS, APFS and SMB, in UTF-8 bytes.
MAX_COMPONENT_BYTES = 255

#: Room kept after a video's stem for the longest name beside it
#: (``<stem> (99).<lang>.vtt``, ``<stem>-thumb.jpg``, ``.<ext>``).
SIDECAR_ROOM = 40

_LOOKALIKES = str.maketrans(
    {
        "/": "⧸",
        "\\": "⧹",
        "<": "＜",
        ">": "＞",
        ":": "：",
        '"': "＂",
        "|": "｜",
        "?": "？",
        "*": "＊",
    }
)

# Control characters (C0, DEL, C1) and the bidirectional overrides and isolates that can
# make ``evil\u202egpj.exe`` display as ``evilexe.jpg``.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")

_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{device}{n}" for device in ("com", "lpt") for n in "123456789¹²³"]
)


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore")


def _tidy_ends(text: str) -> str:
    # Windows drops trailing dots and spaces (so two names would meet); a leading dot
    # hides a file: a leading run of dots becomes one ellipsis character.
    text = text.strip().rstrip(". ")
    if text.startswith("."):
        text = "…" + text.lstrip(".").lstrip()
    return text


def component(text: str | None, *, limit: int = MAX_COMPONENT_BYTES, fallback: str = "_") -> str:
    """One safe, readable path component for ``text`` (never empty, ``.`` or ``..``)."""
    name = unicodedata.normalize("NFC", text or "")
    name = _UNSAFE.sub(" ", name.translate(_LOOKALIKES))
    name = _tidy_ends(_SPACES.sub(" ", name))
    stem, dot, rest = name.partition(".")
    if stem.rstrip().casefold() in _RESERVED:
        name = f"{stem.rstrip()}_{dot}{rest}"
    name = _tidy_ends(_cut(name, limit))
    return name or fallback


def name_key(name: str) -> str:
    """What two names that a case-insensitive filesystem treats as one have in common."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", name).casefold())


def unique_name(name: str, taken: Collection[str], *, limit: int = MAX_COMPONENT_BYTES) -> str:
    """``name``, or ``name (2)``, ``name (3)`` … : the first whose :func:`name_key` is not
    in ``taken`` (a collection of keys), cut so that it fits ``limit`` bytes."""
    candidate = _tidy_ends(_cut(name, limit)) or "_"
    n = 1
    while name_key(candidate) in taken:
        n += 1
        suffix = f" ({n})"
        candidate = (_tidy_ends(_cut(name, limit - len(suffix))) or "_") + suffix
    return candidate


def video_stem(title: str, video_id: str, taken: Collection[str] = ()) -> str:
    """``Title [id]``: the name a video and its sidecars share, unique in its folder
    against ``taken`` (the keys of the stems already there), leaving room for the
    longest sidecar suffix within 255 bytes. The id is never cut away."""
    key = component(video_id, limit=64)
    tag = f" [{key}]"
    budget = MAX_COMPONENT_BYTES - SIDECAR_ROOM - len(tag.encode())
    head = component(title, limit=budget)
    stem = f"{head}{tag}"
    if name_key(stem) not in taken:
        return stem
    n = 2
    while True:
        suffix = f" ({n})"
        head = component(title, limit=budget - len(suffix))
        stem = f"{head}{tag}{suffix}"
        if name_key(stem) not in taken:
            return stem
        n += 1


_STEM = re.compile(r"^(.*\](?: \(\d+\))?)(?:[.-][^\]]*)?$", re.DOTALL)


def stem_of(entry: str) -> str:
    """The stem a folder entry's name shares with its video: ``Title [id]`` of
    ``Title [id].mp4``, ``Title [id]-thumb.jpg`` or ``Title [id].en.vtt``; a name of
    another shape without its last extension."""
    match = _STEM.match(entry)
    if match:
        return match.group(1)
    head, dot, _ = entry.rpartition(".")
    return head if dot and head else entry


def stems_in(entries: Collection[str]) -> set[str]:
    """The keys of the stems that the names in a folder use (for :func:`video_stem`)."""
    return {name_key(stem_of(entry)) for entry in entries}
