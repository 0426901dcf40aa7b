"""HTTP hardening on a real server: request bodies are capped before anything buffers
them (the web process's peak memory measured), WebSocket messages are capped, the
cookie is ``Secure`` behind a TLS proxy, security headers, and a walk over the router
proving that every protected route refuses a request without a credential."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.convertors import (
    Convertor,
    FloatConvertor,
    IntegerConvertor,
    PathConvertor,
    UUIDConvertor,
)
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import LiveServer, free_port, live_server, wait_for
from web.launch import procfile_command
from web.pages import PAGES

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3
MiB = 1024**2


@dataclass
class WebProcess:
    """The Procfile's ``web`` command, run as a process of its own."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss(self) -> int:
        """The process's peak resident set size (VmHWM), in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024


@pytest.fixture(scope="module")
def web_process() -> Iterator[WebProcess]:
    """The Procfile's web line under ``sh`` (``exec``, so the pid is uvicorn's), with
    the test session's environment (tests/conftest.py)."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "VIDFLEET_HOST": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIDFLEET_FORWARDED_ALLOW_IPS", None)  # the Procfile's default is under test
    process = subprocess.Popen(["sh", "-c", f"exec {procfile_command('web')}"], cwd=ROOT, env=env)
    web = WebProcess(process, port)

    def healthy() -> bool:
        assert process.poll() is None, "the web process exited"
        try:
            return httpx.get(f"{web.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, what="the Procfile's web process")
        yield web
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def read_reply(sock: socket.socket) -> bytes:
    """The server's answer (head and Content-Length body), or what came before it
    closed the connection (or reset it)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, found, body = data.partition(b"\r\n\r\n")
            lines = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
            length = httpx.Headers([(name, value) for name, _, value in lines]).get(
                "content-length"
            )
            if found and length is not None and len(body) >= int(length):
                break
    except ConnectionResetError:
        pass
    return data


def post_chunked(port: int, path: str, total: int, piece: int = MiB) -> int | None:
    """POST ``total`` bytes chunked, stopping as soon as the server answers: its status,
    or None when the server closed the connection before we could read its answer."""
    chunk = f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for _ in range(total // piece):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the body ended
                sock.sendall(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after its answer
        reply = read_reply(sock)
    return status_of(reply) if reply else None


def sign_in(web: WebProcess) -> int:
    response = httpx.post(
        f"{web.url}/api/session", json={"token": ADMIN_TOKEN}, headers={"Origin": web.url}
    )
    return response.status_code


def test_a_huge_chunked_body_is_refused_without_the_web_process_buffering_it(
    web_process: WebProcess,
) -> None:
    # Warm up, so first-request imports and caches don't count as the body's memory.
    for _ in range(3):
        assert sign_in(web_process) == 200
    before = web_process.peak_rss()

    assert post_chunked(web_process.port, "/api/session", GiB) in (413, None)

    after = web_process.peak_rss()
    assert after - before < 64 * MiB, f"peak RSS {before / MiB:.0f} -> {after / MiB:.0f} MiB"
    assert sign_in(web_process) == 200  # a body within the cap is still read


def test_a_huge_content_length_is_refused_before_the_body_arrives(
    web_process: WebProcess,
) -> None:
    assert sign_in(web_process) == 200
    before = web_process.peak_rss()
    with socket.create_connection(("127.0.0.1", web_process.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1:{web_process.port}\r\n"
            f"Origin: {web_process.url}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {GiB}\r\n\r\n{{}}".encode()
        )
        reply = read_reply(sock)  # at once: the server must not wait for the 1 GiB
    assert status_of(reply) == 413
    assert b'"too_large"' in reply
    assert web_process.peak_rss() - before < 64 * MiB


def call_asgi(
    app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, path: str = "/echo"
) -> tuple[int, httpx.Headers, bytes, int]:
    """One POST straight into an ASGI app: the status, headers and body of its answer,
    and how many of ``chunks`` the app pulled from ``receive``."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(messages):
            pulled += 1
            return messages[pulled - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    head = httpx.Headers(start["headers"])
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], head, body, pulled


@pytest.fixture
def echo_app() -> Any:
    """A route that reads its whole body, behind a 100-byte BodyLimit."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from web.body_limit import BodyLimit
    from web.errors import exception_handlers

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"length": len(await request.body())})

    return Starlette(
        routes=[Route("/echo", echo, methods=["POST"])],
        middleware=[Middleware(BodyLimit, max_body=100)],
        exception_handlers=exception_handlers,
    )


@pytest.mark.parametrize(
    ("lengths", "status"),
    [
        ([b"101"], 413),
        ([b"99999999999999999999999999"], 413),
        ([b"12abc"], 400),
        (["1²".encode("latin-1")], 400),  # a digit to str.isdigit(), not to int()
        ([b"-1"], 400),
        ([b""], 400),
        ([b"10", b"11"], 400),
    ],
)
def test_a_bad_or_too_large_content_length_is_answered_without_reading_the_body(
    echo_app: Any, lengths: list[bytes], status: int
) -> None:
    headers = [(b"content-length", length) for length in lengths]
    code, head, body, pulled = call_asgi(echo_app, headers, [b"x" * 10])
    assert (code, pulled) == (status, 0)
    assert json.loads(body)["error"]["code"] in ("too_large", "bad_request")
    assert head["connection"] == "close"  # the unread rest is not read and thrown away


def test_a_chunked_body_stops_being_read_at_the_cap(echo_app: Any) -> None:
    code, head, body, pulled = call_asgi(echo_app, [], [b"x" * 60] * 10)
    assert (code, pulled) == (413, 2)  # the second chunk passed 100 bytes
    assert json.loads(body)["error"]["code"] == "too_large"
    assert head["connection"] == "close"


def test_a_body_within_the_cap_is_read_whole(echo_app: Any) -> None:
    code, _, body, _ = call_asgi(echo_app, [], [b"x" * 50, b"x" * 50])
    assert (code, json.loads(body)) == (200, {"length": 100})
    code, head, body, _ = call_asgi(echo_app, [(b"content-length", b"100")], [b"x" * 100])
    assert (code, json.loads(body)) == (200, {"length": 100})
    assert "connection" not in head


def test_websocket_messages_are_capped_at_64_kib(web_process: WebProcess) -> None:
    url = f"ws://127.0.0.1:{web_process.port}/ws"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with connect(url, additional_headers=auth, open_timeout=5) as ws:
        ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": None}))
        ws.send(json.dumps({"action": "subscribe", "jobs": ["x" * 70_000], "since": None}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big


def set_cookie_attributes(response: httpx.Response) -> set[str]:
    (cookie,) = response.headers.get_list("set-cookie")
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_the_session_cookie_is_secure_when_a_tls_proxy_says_https(
    web_process: WebProcess,
) -> None:
    host = f"127.0.0.1:{web_process.port}"
    behind_tls = httpx.post(
        f"{web_process.url}/api/session",
        json={"token": ADMIN_TOKEN},
        headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"},
    )
    assert behind_tls.status_code == 200, behind_tls.text
    assert "secure" in set_cookie_attributes(behind_tls)
    plain = httpx.post(
        f"{web_process.url}/api/session",
        json={"token": ADMIN_TOKEN},
        headers={"Origin": f"http://{host}"},
    )
    assert plain.status_code == 200, plain.text
    assert "secure" not in set_cookie_attributes(plain)
    # A user's sign-in alike, and its cookie is HttpOnly and SameSite=Lax either way.
    made = httpx.post(
        f"{web_process.url}/api/users",
        json={"name": "proxied", "password": "a proxied password"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert made.status_code == 201, made.text
    for proto, secure in (("https", True), ("http", False)):
        user = httpx.post(
            f"{web_process.url}/api/session",
            json={"username": "proxied", "password": "a proxied password"},
            headers={"X-Forwarded-Proto": proto, "Origin": f"{proto}://{host}"},
        )
        assert user.status_code == 200, user.text
        attributes = set_cookie_attributes(user)
        assert ("secure" in attributes) is secure
        assert {"httponly", "samesite=lax"} <= attributes


@pytest.fixture(scope="module")
def app_server() -> Iterator[LiveServer]:
    from db.settings import get_settings
    from web.app import create_app

    with live_server(create_app(get_settings())) as running:
        yield running


def test_the_page_is_served_under_a_policy_that_allows_only_our_own_origin(
    app_server: LiveServer,
) -> None:
    from web.security_headers import HTML_POLICY

    page = httpx.get(f"{app_server.url}/")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == HTML_POLICY
    assert "unsafe-inline" not in HTML_POLICY and "frame-ancestors 'none'" in HTML_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # Nothing inline for the policy to refuse: no <style>, no script body, no on*=.
    inline = InlineCode()
    inline.feed(page.text)
    assert inline.found == []


def test_the_page_assets_are_revalidated_and_locked_down(app_server: LiveServer) -> None:
    from web.security_headers import OTHER_POLICY

    for name in ("js/jobs.js", "css/jobs.css"):
        asset = httpx.get(f"{app_server.url}/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "no-cache"
        assert asset.headers["content-security-policy"] == OTHER_POLICY
        assert asset.headers["x-content-type-options"] == "nosniff"
        again = httpx.get(
            f"{app_server.url}/static/{name}", headers={"If-None-Match": asset.headers["etag"]}
        )
        assert again.status_code == 304


def test_errors_and_refusals_carry_the_headers_too(app_server: LiveServer) -> None:
    from web.security_headers import OTHER_POLICY

    for response in (
        httpx.get(f"{app_server.url}/api/jobs"),  # 401 from the auth middleware
        httpx.get(f"{app_server.url}/no/such/page"),  # 404 from the router
        httpx.post(f"{app_server.url}/api/session", content=b"x" * (65 * 1024)),  # 413
    ):
        assert response.status_code in (401, 404, 413)
        assert response.headers["content-security-policy"] == OTHER_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_a_policy_a_route_sets_itself_is_kept() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from web.security_headers import SecurityHeaders

    async def media(request: Request) -> Response:
        return Response(b"...", headers={"Content-Security-Policy": "sandbox"})

    app = Starlette(
        routes=[Route("/media", media, methods=["POST"])], middleware=[Middleware(SecurityHeaders)]
    )
    _, head, _, _ = call_asgi(app, [], [b""], path="/media")
    assert head.get_list("content-security-policy") == ["sandbox"]
    assert head["x-content-type-options"] == "nosniff"


class InlineCode(HTMLParser):
    """Collects what a strict Content-Security-Policy would refuse in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag} {name}=" for name in names if name.startswith("on")]
        if "style" in names:
            self.found.append(f"{tag} style=")
        self.in_script = tag == "script"
        if self.in_script and "src" not in names:
            self.found.append("<script> without src")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.found.append("inline script")


# The walk over the router. Routes anyone may call; everything else needs a credential.
# The pages are static shells: their data comes from the API, with a credential.
# The schema tells only the API's shape (README, API): public like the health checks.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/api/session", "/openapi.json", *PAGES})
OPEN_MOUNTS = frozenset({"/static"})
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def plausible(convertor: Convertor[Any]) -> str:
    """A value a real client could put in the path parameter."""
    value: Any = {
        IntegerConvertor: 1,
        FloatConvertor: 1.5,
        UUIDConvertor: uuid.UUID(int=1),
        PathConvertor: "1",
    }.get(type(convertor), str(uuid.UUID(int=1)))  # a string id is a job's uuid
    return convertor.to_string(value)


def filled(route: Route | WebSocketRoute | Mount) -> str:
    params = {name: plausible(c) for name, c in route.param_convertors.items()}
    return route.path_format.format(**params)


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every protected endpoint; ``WEBSOCKET`` for a handshake."""
    for route in routes:
        if isinstance(route, Mount):
            if prefix + route.path in OPEN_MOUNTS:
                continue
            if route.routes:
                yield from walk(route.routes, prefix + filled(route))
            else:  # an app of its own: any path below it
                yield "GET", prefix + filled(route) + "/1"
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", prefix + filled(route)
        elif isinstance(route, Route):
            if prefix + route.path in OPEN_PATHS:
                continue
            for method in sorted(route.methods or ANY_METHOD):
                yield method, prefix + filled(route)
        else:
            raise AssertionError(f"the walk does not know {route!r}: teach it")


def protected_requests() -> list[tuple[str, str]]:
    from db.settings import get_settings
    from web.app import create_app

    return sorted(set(walk(create_app(get_settings()).routes)), key=lambda r: (r[1], r[0]))


PROTECTED = protected_requests()


def test_the_walk_reaches_every_kind_of_route() -> None:
    methods = {method for method, _ in PROTECTED}
    assert {"GET", "HEAD", "POST", "WEBSOCKET"} <= methods
    assert not {path for _, path in PROTECTED} & OPEN_PATHS
    assert all("{" not in path for _, path in PROTECTED)  # every parameter filled


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_protected_route_refuses_a_request_without_a_credential(
    app_server: LiveServer, method: str, path: str
) -> None:
    if method == "WEBSOCKET":
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{app_server.port}{path}", open_timeout=5)
        assert refused.value.response.status_code in (401, 403)
        return
    response = httpx.request(method, f"{app_server.url}{path}")
    assert response.status_code == 401, response.text
    if method != "HEAD":
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


MUTATING = [(m, p) for m, p in PROTECTED if m in ("POST", "PUT", "PATCH", "DELETE")]
#: The routes where a viewer changes what is its own (the route checks ownership).
SELF_SERVICE = {("POST", "/api/session/password"), ("POST", "/api/tokens"),
                ("DELETE", "/api/tokens/1")}  # fmt: skip


def signed_in_cookie(server: LiveServer, body: dict[str, str]) -> dict[str, str]:
    """The headers of a browser signed in with ``body``: its cookie and our Origin."""
    response = httpx.post(f"{server.url}/api/session", json=body, headers={"Origin": server.url})
    assert response.status_code == 200, response.text
    cookie = response.cookies["vf_session"]
    return {"Cookie": f"vf_session={cookie}", "Origin": server.url, "csrf": response.json()["csrf"]}


def test_the_walk_reaches_the_mutating_and_self_service_routes() -> None:
    assert len(MUTATING) > 10 and set(MUTATING) >= SELF_SERVICE


def every_route(routes: list[BaseRoute]) -> Iterator[tuple[str, str]]:
    """(method, path) of every endpoint of the router, open or not."""
    for route in routes:
        if isinstance(route, Route):
            yield from ((method, filled(route)) for method in route.methods or ANY_METHOD)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", filled(route)


def test_every_route_is_walked_or_a_documented_public_exception() -> None:
    from db.settings import get_settings
    from web.app import create_app
    from web.auth import AuthMiddleware

    app = create_app(get_settings())
    walked = set(PROTECTED)
    for method, path in every_route(app.routes):
        template = next(
            r.path
            for r in app.routes
            if isinstance(r, Route | WebSocketRoute) and filled(r) == path
        )
        assert (method, path) in walked or template in OPEN_PATHS, (method, path)
        # The walk's exceptions are exactly the paths the middleware leaves open.
        assert AuthMiddleware._protected(path) == ((method, path) in walked), (method, path)
    mounts = {r.path for r in app.routes if isinstance(r, Mount)}
    assert mounts == OPEN_MOUNTS


@pytest.mark.parametrize(("method", "path"), MUTATING, ids=[f"{m} {p}" for m, p in MUTATING])
def test_every_mutating_route_refuses_a_cookie_without_its_csrf_token(
    app_server: LiveServer, method: str, path: str
) -> None:
    headers = signed_in_cookie(app_server, {"token": ADMIN_TOKEN})
    headers.pop("csrf")
    response = httpx.request(method, f"{app_server.url}{path}", headers=headers, json={})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "csrf"


@pytest.mark.parametrize(("method", "path"), MUTATING, ids=[f"{m} {p}" for m, p in MUTATING])
def test_every_mutating_route_refuses_a_viewer_but_its_own_things(
    app_server: LiveServer, method: str, path: str
) -> None:
    with httpx.Client(
        base_url=app_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as admin:
        made = admin.post("/api/users", json={"name": "walker", "password": "walking password"})
        assert made.status_code == 201, made.text
        token = admin.post("/api/tokens", json={"name": "walk", "user": "walker"}).json()["token"]
    headers = signed_in_cookie(app_server, {"username": "walker", "password": "walking password"})
    headers["X-CSRF-Token"] = headers.pop("csrf")
    viewer_cookie = signed_in_cookie(app_server, {"token": VIEWER_TOKEN})
    viewer_cookie["X-CSRF-Token"] = viewer_cookie.pop("csrf")
    # A viewer user's API token and cookie, then the bootstrap viewer token and its cookie.
    for credential in ({"Authorization": f"Bearer {token}"}, headers):
        response = httpx.request(method, f"{app_server.url}{path}", headers=credential, json={})
        if (method, path) in SELF_SERVICE:
            # Past the middleware: the route's own answer (an empty body is a 400; the
            # token with id 1 is the walker's own, revoked by the first credential).
            assert response.status_code in (200, 400, 404), response.text
        else:
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
    for credential in ({"Authorization": f"Bearer {VIEWER_TOKEN}"}, viewer_cookie):
        response = httpx.request(method, f"{app_server.url}{path}", headers=credential, json={})
        if (method, path) in SELF_SERVICE:
            # The bootstrap viewer is no user: no password, no tokens of its own.
            assert response.status_code in (400, 404), response.text
        else:
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
