"""Media work yields the CPU to the web (``VIDFLEET_MEDIA_NICE``).

A transcode, a download or a thumbnail batch can use every core for as long as it
runs; the web must still answer at once. Lowering a process's niceness is not enough
on Linux with ``sched_autogroup`` on (the default of most distributions): the kernel
first shares the CPU between *sessions* (autogroups), and only then between the
processes of one by their niceness. Our media processes run in sessions of their own
(so they can be stopped as a group), so each FFmpeg, yt-dlp child or worker session
would otherwise weigh as much as the whole web. :func:`yield_cpu` lowers both: the
process's niceness and its autogroup's (``/proc/<pid>/autogroup``, see sched(7)).
Raising a niceness needs no privilege; a failure (another platform, a read-only
``/proc``) leaves the process as it was. No library covers the autogroup part.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_NICENESS = 19


def niceness(pid: int = 0) -> int:
    """The niceness of process ``pid`` (0: this one)."""
    return os.getpriority(os.PRIO_PROCESS, pid)


def yield_cpu(pid: int, nice: int) -> None:
    """Give process ``pid`` (0: this one) at least niceness ``nice``, and its session's
    autogroup the same; never raises its priority. ``nice`` 0 changes nothing."""
    if nice <= 0:
        return
    nice = min(nice, MAX_NICENESS)
    with contextlib.suppress(OSError):
        if niceness(pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    autogroup = Path(f"/proc/{pid or 'self'}/autogroup")
    with contextlib.suppress(OSError, ValueError):
        # "/autogroup-123 nice 0": only ever made nicer.
        if int(autogroup.read_text().split()[-1]) < nice:
            autogroup.write_text(f"{nice}\n")
