"""Benchmark 7, what running a step in a process of its own costs: CPU per
``media.isolation.run_isolated`` call (user + system time of this process, of the
children it reaped and of the fork server), for a trivial function and for a yt-dlp
download that fails at once (HTTP 404 from a loopback server in this process), each
three ways:

- in this process, no isolation: the anchor (yt-dlp's own work, in a process that has
  downloaded before);
- isolated, warm: a fork of the fork server a worker keeps (``warm_up``, with
  ``media.download.prepare_downloads``);
- isolated, cold: a server started and stopped for the one call, so an interpreter
  start and the yt-dlp import per call, as every download paid when each child was a
  spawned interpreter.

Batches of each alternate (and which goes first rotates); per-job figures are batch
means (the fork server's own time is read from /proc, in clock ticks, so single jobs
would be too coarse). The overhead is the isolated figure minus the anchor.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.report import median, table

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
SERVER_MARK = b"serve_forks"
MODES = ("in-process", "warm", "cold")


def add(a: int, b: int) -> int:
    """The trivial step."""
    return a + b


class _Missing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _cpu_here() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def _fork_server_cpu() -> float:
    """The warm fork server's CPU so far, with the intermediates it reaped (0 if none)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                if SERVER_MARK not in cmdline.read():
                    continue
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and int(fields[2]) == os.getpgid(0):
            return sum(int(value) for value in fields[11:15]) * TICK_S
    return 0.0


def _cpu() -> float:
    return _cpu_here() + _fork_server_cpu()


def fetch_missing(url: str, workdir: str) -> str:
    """The download that fails at once: its error code."""
    from media.download import download_video
    from media.errors import MediaError

    try:
        download_video(url=url, workdir=Path(workdir), allow_generic=True)
    except MediaError as exc:
        return exc.code
    return "downloaded"


def _jobs(name: str, port: int, workdir: str, first: int, size: int) -> list[dict[str, Any]]:
    if name == "trivial":
        return [{"a": n, "b": 1} for n in range(first, first + size)]
    return [
        {"url": f"http://127.0.0.1:{port}/missing-{n}.mp4", "workdir": f"{workdir}/{n}"}
        for n in range(first, first + size)
    ]


def _batch(mode: str, target: Callable[..., Any], jobs: list[dict[str, Any]]) -> float:
    """Mean CPU seconds per job."""
    from media.download import download_video, prepare_downloads
    from media.egress import install_egress_guard
    from media.isolation import cool_down, run_isolated, warm_up

    guard = partial(install_egress_guard, allow_private=True)
    if mode == "warm":
        warm_up(download_video, install_egress_guard, target, prepare=prepare_downloads)
        run_isolated(target, kwargs=jobs[0], setup=guard)  # not counted: the server warms
    started = _cpu()
    for kwargs in jobs:
        if mode == "in-process":
            outcome = target(**kwargs)
        else:
            outcome = run_isolated(target, kwargs=kwargs, setup=guard)
        assert outcome in (kwargs.get("a", 0) + 1, "not_found"), outcome
    spent = _cpu() - started
    if mode == "warm":
        cool_down()
    return spent / len(jobs)


def run_isolation(*, quick: bool = False) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Missing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rounds, size = (2, 4) if quick else (6, 8)
    per_job: dict[tuple[str, str], list[float]] = {}
    port = server.server_address[1]
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for name, target in (("trivial", add), ("404 download", fetch_missing)):
                target(**_jobs(name, port, workdir, 0, 1)[0])  # lazy imports, not counted
                for r in range(rounds):
                    for mode in MODES[r % 3 :] + MODES[: r % 3]:
                        first = (r * 3 + MODES.index(mode)) * (size + 1) + 1
                        jobs = _jobs(name, port, workdir, first, size)
                        per_job.setdefault((name, mode), []).append(_batch(mode, target, jobs))
    finally:
        server.shutdown()
        server.server_close()
    rows = []
    for name in ("trivial", "404 download"):
        anchor = median(per_job[(name, "in-process")])
        for mode in MODES:
            figures = per_job[(name, mode)]
            mid = median(figures)
            rows.append(
                [
                    f"{name}, {mode}" + (" (anchor)" if mode == "in-process" else ""),
                    f"{mid * 1000:.1f}",
                    f"{min(figures) * 1000:.0f}-{max(figures) * 1000:.0f}",
                    "" if mode == "in-process" else f"{(mid - anchor) * 1000:+.1f}",
                ]
            )
    return "Isolation: CPU per job (ms, median of batch means)\n" + table(
        ["run", "CPU ms/job", "range", "overhead ms"], rows
    )
