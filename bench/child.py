"""A server of the benchmarks' in a child process on a free port (so the load generator
does not share its GIL): started, waited for until ``GET /healthz`` answers, stopped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import IO, Self

import httpx

from bench.env import BenchEnv, free_port

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


class ChildServer:
    """A server in a child process on a free port, answering ``GET /healthz``."""

    name = ""
    #: Start it in a session of its own, as honcho starts each Procfile process (with
    #: ``sched_autogroup`` on, a session is what the kernel shares CPU time between).
    new_session = False

    def __init__(self, env: BenchEnv, label: str) -> None:
        self.env = env
        self.port = free_port()
        self.log_path = env.root / f"{label}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> Self:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv(),
            cwd=REPO,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer:\n{self.log_tail()}")
                time.sleep(0.05)  # polling a child process we just started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
