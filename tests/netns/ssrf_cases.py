"""Downloads never reach internal addresses (issue 6, item 1): the cases themselves.

These tests only make sense inside a network namespace of their own, set up by
``tests/test_network_guard.py``: loopback up, the global-looking address
:data:`PUBLIC_ADDRESS` added to it as the "public internet", and ``/etc/resolv.conf``
bind-mounted to ``nameserver 127.0.0.1``. Run them through that test; run directly
outside such a namespace they skip. (The file name does not match ``test_*.py``, so the
normal run does not collect it.) Inside, with the generic extractor on and private URLs
NOT allowed (the web app and the download actor both get strict settings), a "public"
HTTP server on :data:`PUBLIC_ADDRESS` and a "loopback service" on 127.0.0.1 listen on the
same port; the loopback service records every request and answers each one with
:data:`SECRET` served as ``video/mp4``. A small DNS server answers for
:data:`REBIND_NAME` with the public address until a test makes it answer 127.0.0.1.
Each case sends a real download through the live web app, the real Redis broker and a
real Dramatiq worker: a public URL that redirects to the loopback service, a public page
whose ``<video src>`` points at it, and a host that resolves to a public address while it
is checked and to loopback when the download connects must each fail as not retryable,
without the secret in the job and without a single request at the loopback service;
a direct public URL still downloads. The picture an artist enrichment found is fetched
by the same guard: one that redirects to the loopback service is refused too. A
playlist's listing runs under the same guard: a feed that redirects to the loopback
service fails its sync the same way, and a public feed's entries on loopback (by
address or by the name ``localhost``) are rejected, never fetched, while its public
entry downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from tests.conftest import ADMIN_TOKEN
from tests.support import api_client, live_server, rss_feed, wait_for_job

#: The "public" host. ``is_global`` is true for it (documentation ranges such as
#: 203.0.113.0/24 are not, and a correct guard refuses them too). The outer runner adds
#: it to the namespace's loopback, so traffic to it never leaves the namespace.
PUBLIC_ADDRESS = "93.184.215.14"
LOOPBACK_ADDRESS = "127.0.0.1"
#: A name whose address the test switches from public to loopback (DNS rebinding).
REBIND_NAME = "rebind.vidfleet.test"
#: What the loopback service answers to everything: it must never show up in a job.
SECRET = "INTERNAL-SECRET-7f3a"


def _address_is_local(address: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _resolver_is_ours() -> bool:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return False
    servers = [words[1] for words in map(str.split, lines) if words[:1] == ["nameserver"]]
    return servers == [LOOPBACK_ADDRESS]


@pytest.fixture(scope="session", autouse=True)
def own_network_namespace() -> None:
    """Skip unless we run in the namespace the outer runner prepared (binding 127.0.0.1:53
    or answering for a public address anywhere else would be wrong)."""
    if not (_address_is_local(PUBLIC_ADDRESS) and _resolver_is_ours()):
        pytest.skip(
            f"needs a network namespace with {PUBLIC_ADDRESS} on lo and resolv.conf "
            f"pointing at {LOOPBACK_ADDRESS}: run tests/test_network_guard.py"
        )


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.respond(body=False)

    def do_GET(self) -> None:
        self.respond(body=True)

    def respond(self, *, body: bool) -> None:
        raise NotImplementedError

    def send(
        self,
        data: bytes,
        *,
        content_type: str,
        body: bool,
        status: HTTPStatus = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        start = 0
        range_header = self.headers.get("Range", "")
        if status == HTTPStatus.OK and range_header.startswith("bytes="):
            start = min(int(range_header[6:].split("-", 1)[0] or 0), len(data))
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[start:])


def _serve(address: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class LoopbackService:
    """An internal service on 127.0.0.1: records every request it gets and answers each
    with the secret, as ``video/mp4`` so that yt-dlp would happily download it."""

    port: int = 0
    requests: list[str] = field(default_factory=list)  # "METHOD path (Host: ...)"
    server: ThreadingHTTPServer | None = None

    def start(self) -> LoopbackService:
        owner = self

        class Handler(_QuietHandler):
            def respond(self, *, body: bool) -> None:
                owner.requests.append(f"{self.command} {self.path} (Host: {self.headers['Host']})")
                reply = f"{SECRET}: the internal service's reply\n".encode() * 64
                self.send(reply, content_type="video/mp4", body=body)

        self.server = _serve(LOOPBACK_ADDRESS, self.port, Handler)
        self.port = self.server.server_address[1]
        return self

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK_ADDRESS}:{self.port}{path}"


@dataclass
class PublicServer:
    """The "public" site on :data:`PUBLIC_ADDRESS`: ``/video.mp4`` (a real video),
    ``/redirect.mp4`` (302 to the loopback service), ``/embed.html`` (a page whose
    ``<video src>`` is on the loopback service), ``/feed.xml`` (an RSS channel whose
    items link to the loopback service, to it by the name ``localhost``, and to
    ``/video.mp4``) and ``/feed-redirect.xml`` (302 to the loopback service)."""

    video: Path
    port: int
    stolen_url: str  # the loopback service's URL that the redirect and the page point at
    hits: dict[str, int] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    def start(self) -> PublicServer:
        owner = self

        class Handler(_QuietHandler):
            def respond(self, *, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                owner.hits[path] = owner.hits.get(path, 0) + 1
                if path == "/video.mp4":
                    self.send(owner.video.read_bytes(), content_type="video/mp4", body=body)
                elif path in ("/redirect.mp4", "/feed-redirect.xml"):
                    self.send(
                        b"",
                        content_type="text/plain",
                        body=body,
                        status=HTTPStatus.FOUND,
                        headers={"Location": owner.stolen_url},
                    )
                elif path == "/embed.html":
                    page = (
                        "<!DOCTYPE html><html><head><title>embedded song</title></head>"
                        f'<body><video controls src="{owner.stolen_url}"></video></body></html>'
                    )
                    self.send(page.encode(), content_type="text/html; charset=utf-8", body=body)
                elif path == "/feed.xml":
                    links = [
                        owner.stolen_url,
                        owner.stolen_url.replace(LOOPBACK_ADDRESS, "localhost"),
                        owner.url("/video.mp4"),
                    ]
                    feed = rss_feed("a public channel", links)
                    self.send(feed, content_type="application/rss+xml", body=body)
                else:
                    self.send(
                        b"not here\n",
                        content_type="text/plain",
                        body=body,
                        status=HTTPStatus.NOT_FOUND,
                    )

        self.server = _serve(PUBLIC_ADDRESS, self.port, Handler)
        return self

    def url(self, path: str, host: str = PUBLIC_ADDRESS) -> str:
        return f"http://{host}:{self.port}{path}"


class RebindingResolver(BaseResolver):
    """Answers ``A`` queries for :data:`REBIND_NAME` with the public address, until
    :meth:`flip_to_loopback`; then with 127.0.0.1. TTL 0, so nothing caches an answer;
    ``AAAA`` (and any other type) gets no answer; other names do not exist."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._public_answers_left: int | None = None  # None: public for good
        self.answers: list[str] = []  # every A answer given, in order

    def flip_to_loopback(self, *, after_public_answers: int = 0) -> None:
        """Answer 127.0.0.1 from now on, after ``after_public_answers`` more public ones."""
        with self._lock:
            self._public_answers_left = after_public_answers

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".").lower() != REBIND_NAME:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if question.qtype == QTYPE.A:
            with self._lock:
                if self._public_answers_left is None or self._public_answers_left > 0:
                    address = PUBLIC_ADDRESS
                    if self._public_answers_left is not None:
                        self._public_answers_left -= 1
                else:
                    address = LOOPBACK_ADDRESS
                self.answers.append(address)
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply


@dataclass
class Internet:
    """Everything a download can reach in the namespace."""

    public: PublicServer
    loopback: LoopbackService
    dns: RebindingResolver


@pytest.fixture
def internet(sample_video: Path) -> Iterator[Internet]:
    loopback = LoopbackService().start()
    public = PublicServer(
        video=sample_video, port=loopback.port, stolen_url=loopback.url("/stolen.mp4")
    ).start()
    resolver = RebindingResolver()
    # UDP; only errors logged (``resolver.answers`` tells what was answered).
    dns = DNSServer(
        resolver, address=LOOPBACK_ADDRESS, port=53, logger=DNSLogger("error", prefix=False)
    )
    dns.start_thread()
    try:
        yield Internet(public=public, loopback=loopback, dns=resolver)
    finally:
        dns.stop()
        for server in (public.server, loopback.server):
            assert server is not None
            server.shutdown()
            server.server_close()


@pytest.fixture
def strict_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The suite's settings with private URLs not allowed, for the download and playlist
    actors too (they read ``settings`` from their modules at call time)."""
    from actors import download, playlists

    strict = dataclasses.replace(settings, allow_private_urls=False)
    assert strict.enable_generic_extractor
    monkeypatch.setattr(download, "settings", strict)
    monkeypatch.setattr(playlists, "settings", strict)
    return strict


@pytest.fixture
def strict_api(strict_settings: Any) -> Iterator[httpx.Client]:
    """An admin client of a live web app built from the strict settings."""
    from web.app import create_app

    with (
        live_server(create_app(strict_settings)) as server,
        api_client(server.url, ADMIN_TOKEN) as client,
    ):
        yield client


def request_download(api: httpx.Client, url: str) -> str:
    response = api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def assert_refused(job: dict[str, Any], internet: Internet) -> None:
    """Failed for good, the internal reply nowhere in the job, and the internal service
    never asked."""
    assert job["status"] == "failed", job
    assert job["error"]["retryable"] is False, job["error"]
    assert SECRET not in job["error"]["message"], job["error"]
    assert SECRET not in json.dumps(job), job
    assert internet.loopback.requests == [], internet.loopback.requests


def test_a_host_that_rebinds_to_loopback_after_the_check_is_refused(
    strict_api: httpx.Client, internet: Internet
) -> None:
    """The web's check and the worker's early check (if any) see the public address; the
    download's connections see loopback and must be refused where they connect."""
    import dramatiq

    from actors import broker

    url = internet.public.url("/video.mp4", host=REBIND_NAME)
    job_id = request_download(strict_api, url)  # the web's check saw the public address
    assert internet.dns.answers and set(internet.dns.answers) == {PUBLIC_ADDRESS}
    # One more public answer, for the worker's own early URL check if it makes one: the
    # address must be refused where the download connects, not only where it is checked.
    internet.dns.flip_to_loopback(after_public_answers=1)
    # Only now a worker: it cannot have picked the job up before the flip.
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        job = wait_for_job(strict_api, job_id)
    finally:
        worker.stop()
    assert LOOPBACK_ADDRESS in internet.dns.answers, internet.dns.answers
    assert_refused(job, internet)


def test_a_redirect_to_a_loopback_service_is_refused(
    strict_api: httpx.Client, internet: Internet, worker: Any
) -> None:
    job_id = request_download(strict_api, internet.public.url("/redirect.mp4"))
    job = wait_for_job(strict_api, job_id)
    assert internet.public.hits.get("/redirect.mp4"), internet.public.hits
    assert_refused(job, internet)


def test_a_page_embedding_a_loopback_video_is_refused(
    strict_api: httpx.Client, internet: Internet, worker: Any
) -> None:
    job_id = request_download(strict_api, internet.public.url("/embed.html"))
    job = wait_for_job(strict_api, job_id)
    assert internet.public.hits.get("/embed.html"), internet.public.hits
    assert_refused(job, internet)


def test_a_direct_public_url_still_downloads(
    strict_api: httpx.Client, internet: Internet, worker: Any, sample_video: Path
) -> None:
    url = internet.public.url("/video.mp4")
    job = wait_for_job(strict_api, request_download(strict_api, url))
    assert job["status"] == "succeeded", job
    videos = strict_api.get("/api/videos").json()["items"]
    assert [(v["id"], v["source_url"]) for v in videos] == [(job["result"]["video_id"], url)]
    assert videos[0]["size"] == sample_video.stat().st_size
    assert internet.loopback.requests == []


def test_an_enrichment_picture_that_redirects_to_a_loopback_service_is_refused(
    internet: Internet, tmp_path: Path
) -> None:
    from media.egress import install_egress_guard
    from media.errors import MediaError
    from media.images import fetch_picture
    from media.isolation import run_isolated

    dest = tmp_path / "upload-1"
    with pytest.raises(MediaError) as refused:
        run_isolated(
            fetch_picture,
            kwargs={"url": internet.public.url("/redirect.mp4"), "dest": str(dest),
                    "max_bytes": 1_000_000, "user_agent": "vidfleet/test"},
            setup=partial(install_egress_guard, allow_private=False),
        )  # fmt: skip
    assert refused.value.code == "private_address" and not refused.value.retryable
    assert SECRET not in refused.value.message and not dest.exists()
    assert internet.public.hits.get("/redirect.mp4"), internet.public.hits
    assert internet.loopback.requests == [], internet.loopback.requests


def follow_playlist(api: httpx.Client, url: str) -> dict[str, Any]:
    """Add a playlist that downloads by itself; its first sync, once it ended."""
    response = api.post("/api/playlists", json={"url": url, "auto_download": True})
    assert response.status_code == 201, response.text
    return wait_for_job(api, response.json()["sync_job"]["id"])


def test_a_public_feed_whose_entries_point_at_loopback_downloads_only_its_public_one(
    strict_api: httpx.Client, internet: Internet, worker: Any
) -> None:
    sync = follow_playlist(strict_api, internet.public.url("/feed.xml"))
    assert sync["status"] == "succeeded", sync
    assert sync["result"]["rejected"] == 2 and sync["result"]["queued"] == 1, sync["result"]
    downloads = strict_api.get("/api/jobs?kind=download").json()["items"]
    assert [job["params"]["url"] for job in downloads] == [internet.public.url("/video.mp4")]
    assert wait_for_job(strict_api, downloads[0]["id"])["status"] == "succeeded"
    playlist = strict_api.get("/api/playlists").json()["items"][0]
    entries = strict_api.get(f"/api/playlists/{playlist['id']}").json()["entries"]["items"]
    rejected = [entry for entry in entries if entry["state"] == "rejected"]
    assert len(rejected) == 2 and all("private" in entry["reason"] for entry in rejected)
    assert internet.loopback.requests == [], internet.loopback.requests


def test_a_feed_that_redirects_to_a_loopback_service_fails_its_sync(
    strict_api: httpx.Client, internet: Internet, worker: Any
) -> None:
    sync = follow_playlist(strict_api, internet.public.url("/feed-redirect.xml"))
    assert internet.public.hits.get("/feed-redirect.xml"), internet.public.hits
    assert sync["error"]["type"] == "private_address", sync
    assert_refused(sync, internet)
