"""A video's chapters, from yt-dlp's info: the source's own (``chapters``) and, when
asked for, SponsorBlock's segments (``sponsorblock_chapters``, from yt-dlp's
``SponsorBlock`` postprocessor). Whatever an extractor or SponsorBlock says, what is
kept is bounded: at most :data:`MAX_CHAPTERS`, titles of at most :data:`MAX_TITLE`
characters without control characters, finite times with the end not before the
start, sorted by start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_CHAPTERS = 500
MAX_TITLE = 200
#: What a SponsorBlock category may look like (``sponsor``, ``music_offtopic`` …).
_CATEGORY = re.compile(r"[a-z_]{1,32}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Chapter:
    """A stretch of the video, in seconds.

    Parameters:
      source: ``chapters`` (the source's own) or ``sponsorblock``.
      category: SponsorBlock's category (``sponsor``, ``intro`` …); None for a chapter.
    """

    start: float
    end: float
    title: str
    source: str = "chapters"
    category: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "start": self.start, "end": self.end, "title": self.title, "source": self.source,
        }  # fmt: skip
        if self.category is not None:
            data["category"] = self.category
        return data


def _seconds(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return round(value, 3) if math.isfinite(value) and value >= 0 else None


def _title(raw: object) -> str:
    text = raw if isinstance(raw, str) else ""
    return " ".join(_CONTROL.sub(" ", text[: MAX_TITLE * 4]).split())[:MAX_TITLE]


def _cleaned(raw: object, source: str) -> list[Chapter]:
    if not isinstance(raw, list):
        return []
    found = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        start, end = _seconds(item.get("start_time")), _seconds(item.get("end_time"))
        if start is None or end is None or end < start:
            continue
        category = item.get("category") if source == "sponsorblock" else None
        if not (isinstance(category, str) and _CATEGORY.fullmatch(category)):
            category = None
        found.append(Chapter(start, end, _title(item.get("title")), source, category))
    return found


def chapters_of(info: dict[str, Any]) -> tuple[Chapter, ...]:
    """The chapters of yt-dlp's ``info``, cleaned and bounded (see the module)."""
    found = _cleaned(info.get("chapters"), "chapters")
    found += _cleaned(info.get("sponsorblock_chapters"), "sponsorblock")
    found.sort(key=lambda chapter: (chapter.start, chapter.end, chapter.source))
    return tuple(found[:MAX_CHAPTERS])


def sponsorblock_options(categories: tuple[str, ...]) -> list[dict[str, Any]]:
    """yt-dlp's postprocessor that asks SponsorBlock for these categories' segments
    (into ``info["sponsorblock_chapters"]``, for YouTube videos), as its
    ``--sponsorblock-mark`` adds it, without cutting or marking the file; none for no
    category."""
    if not categories:
        return []
    return [{"key": "SponsorBlock", "categories": list(categories), "when": "after_filter"}]
