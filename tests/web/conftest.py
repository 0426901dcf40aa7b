"""Fixtures of the web tests that run the Procfile's web line as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_for
from tests.web.browser import browser, clean_console, console, new_page, page  # noqa: F401 (fixtures)
from web.launch import procfile_command

ROOT = Path(__file__).resolve().parents[2]


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: the parent's children that run Python (not the
    multiprocessing resource tracker or anything else it may start)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == parent and b"resource_tracker" not in cmdline:
            pids.append(int(name))
    return pids


WebProcess = tuple[subprocess.Popen[bytes], int]  # the process and its port


@pytest.fixture
def start_web() -> Iterator[Callable[..., WebProcess]]:
    """Starts the Procfile's web line with the test session's environment
    (tests/conftest.py) and the given variables (``PORT``: that port, e.g. to restart
    a web process on the port it had; else a free one); ``exec``, so the pid is
    uvicorn's (the supervisor's, with more than one worker). Stops what it started."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**variables: str) -> WebProcess:
        port = int(variables.pop("PORT", 0)) or free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "VIDFLEET_HOST": "127.0.0.1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for name in ("WEB_CONCURRENCY", "VIDFLEET_WS_COMPRESSION"):
            env.pop(name, None)  # the Procfile's defaults unless a test sets them
        env.update(variables)
        command = ["sh", "-c", f"exec {procfile_command('web')}"]
        process = subprocess.Popen(command, cwd=ROOT, env=env)
        started.append(process)
        workers = int(variables.get("WEB_CONCURRENCY", "1"))

        def ready() -> bool:
            assert process.poll() is None, "the web process exited"
            if workers > 1 and len(worker_pids(process.pid)) < workers:
                return False
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, what=f"the web process with {workers} workers")
        return process, port

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
