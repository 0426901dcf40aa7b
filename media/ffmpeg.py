"""Where the ffmpeg binary is (PATH first, else the one bundled by imageio-ffmpeg), and
running it to the end from a worker."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from functools import lru_cache

from media.priority import niceness, yield_cpu


@lru_cache(maxsize=1)
def ffmpeg_path() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_to_end(argv: list[str], *, timeout: float) -> tuple[int, str]:
    """Run an FFmpeg command in a process group of its own to its end; its exit code and
    the tail of its stderr. Past ``timeout`` the whole group is killed (code -9)."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # Its session is a new autogroup: it keeps our niceness only if we say so.
    yield_cpu(process.pid, niceness())
    try:
        _out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        _out, err = process.communicate()
    return process.returncode, err.decode(errors="replace")[-2000:]
