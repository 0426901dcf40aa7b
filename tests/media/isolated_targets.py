"""Functions the isolation tests run in a child process (they must be importable)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from media.errors import NotMedia
from media.ffmpeg import ffmpeg_path


def run_ffmpeg_forever(on_started: Callable[[int], None]) -> None:
    """An endless FFmpeg step: real-time encoding of a test source to nowhere."""
    ffmpeg = subprocess.Popen(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi",
         "-i", "testsrc=rate=25", "-f", "null", "-"],
    )  # fmt: skip
    on_started(ffmpeg.pid)
    ffmpeg.wait()


def ask_and_add(a: int, b: int, double: Callable[[int], int]) -> int:
    return double(a) + b


def refuse() -> None:
    raise NotMedia("not a video at all")


def die() -> None:
    os._exit(9)


def try_egress(port: int, unix_path: str) -> dict[str, str]:
    """What the egress guard lets through, attempt by attempt: "ok" or the error."""
    import socket

    attempts: dict[str, Callable[[], object]] = {
        "loopback": lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close(),
        "mapped": lambda: socket.create_connection(("::ffff:127.0.0.1", port), timeout=2),
        "by_name": lambda: _connect_by_name(port),
        "unix": lambda: _connect_unix(unix_path),
        "udp": lambda: _send_udp(port),
        "shell": lambda: subprocess.run(["sh", "-c", "true"], check=True),
        "os_system": lambda: os.system("true"),
        "ffmpeg_url": lambda: subprocess.run(
            [
                ffmpeg_path(),
                "-loglevel",
                "quiet",
                "-i",
                f"http://127.0.0.1:{port}/x.mp4",
                "-f",
                "null",
                "-",
            ],
            check=False,
        ),  # fmt: skip
        "ffmpeg_version": lambda: subprocess.run(
            [ffmpeg_path(), "-version"], check=True, capture_output=True
        ),
    }
    return _outcomes(attempts)


def _connect_by_name(port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.settimeout(2)
        sock.connect(("localhost", port))


def _connect_unix(path: str) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)


def _send_udp(port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("127.0.0.1", port))


def whereabouts() -> dict[str, int]:
    """Where the child stands in the process tree."""
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
    }


def open_fds() -> dict[int, str]:
    """What the child's file descriptors point at (the listing's own one left out)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return found


def try_shell_and_loopback(port: int) -> dict[str, str]:
    """What an unguarded process may do and a guarded one may not: "ok" or the error."""
    import socket

    attempts: dict[str, Callable[[], object]] = {
        "loopback": lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close(),
        "shell": lambda: subprocess.run(["sh", "-c", "true"], check=True),
        "os_system": lambda: os.system("true"),
    }
    return _outcomes(attempts)


def hoard_memory(megabytes: int) -> int:
    """Hold ``megabytes`` of memory at once (the cap should stop it first)."""
    held = [bytearray(1024**2) for _ in range(megabytes)]
    return len(held)


def program_taking_a_gigabyte() -> int:
    """A program this step starts, that takes 1 GiB: its exit status."""
    import sys

    return subprocess.run([sys.executable, "-c", "bytearray(1024**3)"], check=False).returncode


def crash_like_a_decoder(*args: object, **kwargs: object) -> None:
    """A decoder that segfaults on its input (as a crafted file might make FFmpeg do)."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def _outcomes(attempts: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Each attempt's outcome: "ok" or the name of the error it raised."""
    outcome = {}
    for name, attempt in attempts.items():
        try:
            attempt()
        except Exception as exc:
            outcome[name] = type(exc).__name__
        else:
            outcome[name] = "ok"
    return outcome
