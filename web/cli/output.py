"""Text for a terminal: what the server says, made safe to print, and the small
formats the commands share (sizes, speeds, durations, ages, tables).

Everything shown comes from the server, and much of it from the sites videos come
from (titles, URLs, error messages): a title with an escape sequence could move the
cursor, rewrite earlier lines or set the terminal's title. :func:`clean` drops every
control character before anything is printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what follows.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def clean(value: Any, limit: int = 500) -> str:
    """``value`` as printable text of at most ``limit`` characters: each control
    character (newlines too) becomes a space, so one value is one line."""
    text = _CONTROLS.sub(" ", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if the server sent an object there, else an empty one."""
    return value if isinstance(value, dict) else {}


def number(value: Any) -> float | None:
    """A finite number the server sent, or None for anything else (a bool, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def human_bytes(value: Any) -> str:
    size = number(value)
    if size is None or size < 0:
        return "?"
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_speed(value: Any) -> str:
    speed = number(value)
    return "" if speed is None or speed <= 0 else f"{human_bytes(speed)}/s"


def human_duration(value: Any) -> str:
    """Seconds as ``m:ss`` or ``h:mm:ss``; empty when unknown."""
    seconds = number(value)
    if seconds is None or seconds < 0 or seconds > 100 * 24 * 3600:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def percent(value: Any) -> str:
    """A progress fraction (0..1) as ``42%``; ``-`` when unknown."""
    fraction = number(value)
    return "-" if fraction is None else f"{min(max(fraction, 0.0), 1.0):.0%}"


def age(timestamp: Any, now: datetime | None = None) -> str:
    """How long ago an ISO 8601 time was, in its largest unit (``45s``, ``3m``, ``2h``,
    ``5d``); ``?`` for anything that is not such a time."""
    if not isinstance(timestamp, str):
        return "?"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(((now or datetime.now(UTC)) - then).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> str:
    """Columns padded to their widest cell; the last column is cut to fit ``width``."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers) - 1)]
    lines = []
    for row in (headers, *rows):
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
        room = max(width - len(head) - 2, 10)
        last = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        lines.append(f"{head}  {last}".rstrip())
    return "\n".join(lines)
