"""How ``download --wait`` shows a job as it goes.

On a terminal, :class:`ProgressBar` redraws one line: the stage, a bar with the
percentage, speed and ETA from the job's ``live`` fields, or a bouncing block (an
indeterminate bar) while the size is unknown. Anywhere else (a pipe, a log file),
:class:`ProgressLines` prints a plain line per status or stage change and per tenth of
progress, so a log stays short. Both write to stderr: stdout keeps the outcome.
"""

from __future__ import annotations

import shutil
from typing import Any, TextIO

from web.cli.output import (
    clean,
    human_bytes,
    human_duration,
    human_speed,
    mapping,
    number,
    percent,
)

BAR_WIDTH = 24
#: The bouncing block of an indeterminate bar.
BLOCK = "<=>"


def short_id(job_id: Any) -> str:
    return clean(job_id, 36)[:8]


def job_state(job: dict[str, Any]) -> str:
    """``running: downloading``, ``queued: waiting``: the status and the stage."""
    status, stage = clean(job.get("status"), 20), job.get("stage")
    return f"{status}: {clean(stage, 30)}" if stage else status


def live_figures(job: dict[str, Any]) -> str:
    """``3.4 MiB/s, ETA 0:12`` (or the bytes so far when the total is unknown)."""
    live = mapping(job.get("live"))
    figures = []
    if number(job.get("progress")) is None and number(live.get("downloaded_bytes")) is not None:
        figures.append(human_bytes(live["downloaded_bytes"]))
    if speed := human_speed(live.get("speed")):
        figures.append(speed)
    if eta := human_duration(live.get("eta")):
        figures.append(f"ETA {eta}")
    return ", ".join(figures)


class ProgressBar:
    """One line redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.job: dict[str, Any] | None = None
        self.frame = 0
        self.drawn = False

    def show(self, job: dict[str, Any]) -> None:
        self.job = job
        self.draw()

    def tick(self) -> None:
        """Time passed: move the indeterminate bar's block."""
        self.frame += 1
        if self.job is not None and number(self.job.get("progress")) is None:
            self.draw()

    def note(self, text: str) -> None:
        """A line of its own above the bar (a dropped connection, a reconnect)."""
        self.clear()
        print(f"vidfleet: {text}", file=self.stream, flush=True)
        self.draw()

    def close(self) -> None:
        """End the bar's line, so what comes next starts on a line of its own."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.drawn = False

    def draw(self) -> None:
        if self.job is None:
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = f"{job_state(self.job)} {self.bar()} {percent(self.job.get('progress'))}"
        if figures := live_figures(self.job):
            line += f"  {figures}"
        elif self.job.get("message"):
            line += f"  {clean(self.job['message'], 80)}"
        self.stream.write(f"\r\x1b[K{line[:width]}")
        self.stream.flush()
        self.drawn = True

    def bar(self) -> str:
        fraction = number(self.job.get("progress")) if self.job else None
        if fraction is None:
            span = BAR_WIDTH - len(BLOCK)
            step = self.frame % (2 * span)
            at = step if step <= span else 2 * span - step
            return f"[{' ' * at}{BLOCK}{' ' * (span - at)}]"
        done = round(min(max(fraction, 0.0), 1.0) * BAR_WIDTH)
        return f"[{'#' * done}{'-' * (BAR_WIDTH - done)}]"


class ProgressLines:
    """Plain lines: one per status or stage change, and one per tenth of progress."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.state: str | None = None
        self.tenth = -1

    def show(self, job: dict[str, Any]) -> None:
        state = job_state(job)
        fraction = number(job.get("progress"))
        tenth = -1 if fraction is None else int(min(max(fraction, 0.0), 1.0) * 10)
        if state == self.state and tenth <= self.tenth:
            return
        self.state, self.tenth = state, tenth
        line = f"job {short_id(job.get('id'))} {state}"
        if fraction is not None:
            line += f" {percent(fraction)}"
        if figures := live_figures(job):
            line += f" ({figures})"
        elif job.get("message"):
            line += f" ({clean(job['message'], 120)})"
        print(line, file=self.stream, flush=True)

    def tick(self) -> None:
        pass

    def note(self, text: str) -> None:
        print(f"vidfleet: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


Display = ProgressBar | ProgressLines


def display_for(stream: TextIO) -> Display:
    return ProgressBar(stream) if stream.isatty() else ProgressLines(stream)
