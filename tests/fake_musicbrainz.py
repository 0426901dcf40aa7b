"""A MusicBrainz ``/ws/2`` server the tests script, on a free local port.

Each searched name (the phrase of ``/ws/2/artist?query="..."``) and each looked-up MBID
(``/ws/2/artist/<mbid>``) has a list of answers, given in order (the last one repeats);
anything else is a 404 as MusicBrainz sends it. ``/images/<name>`` serves the picture
``images[name]``. Every request is recorded with its arrival time (``time.monotonic()``
of this process), path, query and User-Agent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Arrival:
    at: float
    path: str
    query: dict[str, list[str]]
    user_agent: str


def as_json(data: Any, status: int = 200, **headers: str) -> Answer:
    return Answer(status, json.dumps(data).encode(), headers)


def hit(name: str, mbid: str, score: int, **extra: Any) -> dict[str, Any]:
    """One artist of a search answer."""
    return {"id": mbid, "type": "Person", "score": score, "name": name, "sort-name": name, **extra}


def search(*hits: dict[str, Any]) -> Answer:
    return as_json({"created": "2026-01-01T00:00:00.000Z", "count": len(hits), "offset": 0,
                    "artists": list(hits)})  # fmt: skip


def artist(
    mbid: str,
    name: str,
    *,
    country: str | None = None,
    begin: str | None = None,
    genres: dict[str, int] | None = None,
    tags: dict[str, int] | None = None,
    image: str | None = None,
    disambiguation: str = "",
) -> Answer:
    """A lookup answer (``inc=tags+genres+url-rels``)."""
    relations = [
        {"type": "discogs", "url": {"resource": "https://www.discogs.com/artist/1"}},
        *([{"type": "image", "url": {"resource": image}}] if image else []),
    ]
    return as_json({
        "id": mbid, "name": name, "sort-name": name, "disambiguation": disambiguation,
        "country": country, "life-span": {"begin": begin, "end": None, "ended": False},
        "genres": [{"name": g, "count": c} for g, c in (genres or {}).items()],
        "tags": [{"name": t, "count": c} for t, c in (tags or {}).items()],
        "relations": relations,
    })  # fmt: skip


class FakeMusicBrainz:
    def __init__(self) -> None:
        self.searches: dict[str, list[Answer]] = {}
        self.lookups: dict[str, list[Answer]] = {}
        self.images: dict[str, bytes] = {}
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_arrivals(self) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.path.startswith("/ws/2/")]

    def _answer(self, path: str, query: dict[str, list[str]]) -> Answer:
        if path.startswith("/images/") and path[8:] in self.images:
            return Answer(200, self.images[path[8:]], {"Content-Type": "image/png"})
        answers: list[Answer] | None = None
        if path == "/ws/2/artist":
            phrase = query.get("query", [""])[0]
            if phrase.startswith('"') and phrase.endswith('"'):
                name = phrase[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                answers = self.searches.get(name)
        elif path.startswith("/ws/2/artist/"):
            answers = self.lookups.get(path.rsplit("/", 1)[1])
        if not answers:
            return as_json({"error": "Not Found", "help": "For usage, please see: ..."}, 404)
        with self._lock:
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def start(self) -> FakeMusicBrainz:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                arrived = time.monotonic()
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with owner._lock:
                    owner.arrivals.append(
                        Arrival(arrived, parts.path, query, self.headers.get("User-Agent", ""))
                    )
                answer = owner._answer(parts.path, query)
                self.send_response(answer.status)
                headers = {"Content-Type": "application/json; charset=utf-8", **answer.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
