"""A server standing in for Jellyfin, Plex or a webhook receiver, on a free local port.

It records every request (arrival time as ``time.monotonic()`` of this process, method,
path, headers, body) and answers with the statuses it was given, in order (the last
one repeats; none given: ``204``). The fixtures ``hook_server`` (start such servers)
and ``configure_hooks`` (point the workers' hooks at them) are shared through
``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Configure = Callable[..., Any]


@dataclass(frozen=True)
class Call:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeHookServer:
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [204]
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def _record(self, call: Call) -> int:
        with self._lock:
            self._calls.append(call)
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def start(self) -> FakeHookServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = owner._record(Call(arrived, self.command, self.path, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()

            do_GET = do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def hook_server() -> Iterator[Callable[..., FakeHookServer]]:
    started: list[FakeHookServer] = []

    def start(*statuses: int) -> FakeHookServer:
        started.append(FakeHookServer(*statuses).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def configure_hooks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Point the workers' refresh hooks at the given targets (short delays); returns
    the settings, for a web app to be made with the same."""
    import actors.refresh_hooks
    from db.settings import HookSettings

    def configure(**hooks: Any) -> Any:
        chosen = HookSettings(**{"delay": 0.3, "min_interval": 0.0, **hooks})
        configured = dataclasses.replace(settings, hooks=chosen)
        monkeypatch.setattr(actors.refresh_hooks, "get_settings", lambda: configured)
        return configured

    return configure
