"""WS /ws: auth, resume with ``since``, resync, several replicas, slow sockets, caps."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import os
import secrets
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import frames_to_events, live_server, wait_for, wait_for_job

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER_AUTH = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
FINISHED = ("succeeded", "failed", "cancelled")


def subscribe(
    ws: ClientConnection, since: str | None = None, jobs: list[str] | None = None
) -> None:
    ws.send(json.dumps({"action": "subscribe", "jobs": jobs or ["*"], "since": since}))


def receive_events(ws: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    return frames_to_events(ws.recv(timeout=timeout))


def publish(redis_client: Any, job_id: str, status: str = "running", **fields: Any) -> str:
    from db import live

    job = {"id": job_id, "status": status, "parent_id": None, **fields}
    return str(redis_client.xadd(live.EVENTS_STREAM, live.encode_event(job)))


def test_a_websocket_without_a_credential_is_refused(server: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url, open_timeout=5)
    assert refused.value.response.status_code == 403


def test_a_cookie_websocket_is_accepted_from_its_own_origin_and_refused_from_another(
    server: Any,
) -> None:
    with httpx.Client(base_url=server.url) as browser:
        login = browser.post(
            "/api/session", json={"token": ADMIN_TOKEN}, headers={"Origin": server.url}
        )
        assert login.status_code == 200
        cookie = f"vf_session={login.cookies['vf_session']}"
        assert browser.get("/api/jobs").status_code == 200  # the cookie works for reads
    own = {"Cookie": cookie, "Origin": server.url}
    with connect(server.ws_url, additional_headers=own, open_timeout=5) as ws:
        subscribe(ws)
    for origin in ("http://evil.example", "null"):
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, additional_headers={"Cookie": cookie, "Origin": origin})
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(server.ws_url, additional_headers={"Cookie": cookie})  # no Origin at all


def test_a_cookie_cannot_mutate_from_a_foreign_origin(server: Any, media_server: Any) -> None:
    with httpx.Client(base_url=server.url) as browser:
        login = browser.post(
            "/api/session", json={"token": ADMIN_TOKEN}, headers={"Origin": server.url}
        )
        csrf = {"X-CSRF-Token": login.json()["csrf"]}
        body = {"url": media_server.url("/media/csrf.mp4")}
        refused = browser.post(
            "/api/videos/download", json=body, headers={"Origin": "http://evil.example", **csrf}
        )
        assert refused.status_code == 403
        accepted = browser.post(
            "/api/videos/download", json=body, headers={"Origin": server.url, **csrf}
        )
        assert accepted.status_code == 202


def test_a_bad_subscription_gets_an_error_and_the_socket_stays_usable(
    server: Any, redis_client: Any
) -> None:
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        for bad in ({"action": "dance"}, {"action": "subscribe", "jobs": "all"},
                    {"action": "subscribe", "since": "yesterday"}):  # fmt: skip
            ws.send(json.dumps(bad))
            assert receive_events(ws)[0]["type"] == "error"
        subscribe(ws, since="0-0")
        event_id = publish(redis_client, "job-1")
        assert receive_events(ws)[0]["id"] == event_id


def test_subscribing_to_some_jobs_filters_the_others_out(server: Any, redis_client: Any) -> None:
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since="0-0", jobs=["wanted"])
        publish(redis_client, "other")
        publish(redis_client, "child", parent_id="wanted")
        last = publish(redis_client, "wanted", status="succeeded")
        got: list[dict[str, Any]] = []
        while not got or got[-1]["id"] != last:
            got += receive_events(ws)
        assert [e["job"]["id"] for e in got] == ["child", "wanted"]


def test_a_client_that_reconnects_with_since_misses_no_event(
    server: Any, api: httpx.Client, worker: Any, media_server: Any, redis_client: Any
) -> None:
    from db import live

    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/slow/resume.mp4")}
    ).json()
    seen: list[dict[str, Any]] = []
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since="0-0", jobs=[job["id"]])
        # Leave as soon as the download is under way.
        while not any(e["job"]["status"] == "running" for e in seen):
            seen += receive_events(ws)
    last_id = seen[-1]["id"]
    # Events keep coming while nobody listens; wait until some did.
    wait_for(lambda: redis_client.xlen(live.EVENTS_STREAM) > len(seen) + 1, what="more events")
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since=last_id, jobs=[job["id"]])
        while seen[-1]["job"]["status"] not in FINISHED:
            seen += receive_events(ws, timeout=30)
    stream = redis_client.xrange(live.EVENTS_STREAM)
    expected = [entry_id for entry_id, fields in stream if job["id"] in fields["job"]]
    assert [e["id"] for e in seen] == expected
    assert seen[-1]["job"]["status"] == "succeeded"
    assert wait_for_job(api, job["id"])["status"] == "succeeded"


def test_a_since_older_than_the_stream_gets_resync(server: Any, redis_client: Any) -> None:
    from db import live

    old = publish(redis_client, "job-a")
    publish(redis_client, "job-b")
    redis_client.xtrim(
        live.EVENTS_STREAM, maxlen=1, approximate=False
    )  # job-a's event is trimmed away
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since=old)
        assert receive_events(ws) == [{"type": "resync"}]
        # After the resync the socket is live.
        fresh = publish(redis_client, "job-c")
        assert receive_events(ws)[0]["id"] == fresh
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since="1-0")  # far older than anything in the stream
        assert receive_events(ws) == [{"type": "resync"}]


def test_a_since_with_more_events_after_it_than_the_limit_gets_resync_then_live_events(
    settings: Any, redis_client: Any
) -> None:
    from web.app import create_app

    with live_server(create_app(dataclasses.replace(settings, max_replay_events=5))) as server:
        since = publish(redis_client, "before")
        sent = [publish(redis_client, f"job-{n}") for n in range(5)]
        with connect(server.ws_url, additional_headers=AUTH) as ws:
            subscribe(ws, since=since)  # five events follow: all replayed
            got: list[str] = []
            while len(got) < len(sent):
                got += [e["id"] for e in receive_events(ws)]
            assert got == sent
        sent.append(publish(redis_client, "job-5"))
        with connect(server.ws_url, additional_headers=AUTH) as ws:
            subscribe(ws, since=since)  # six follow: more than the limit
            assert receive_events(ws) == [{"type": "resync"}]
            fresh = publish(redis_client, "job-6")
            assert [e["id"] for e in receive_events(ws)] == [fresh]  # live, nothing replayed


def test_two_web_instances_on_one_redis_deliver_the_same_events(
    app: Any, settings: Any, redis_client: Any
) -> None:
    from web.app import create_app

    with live_server(app) as one, live_server(create_app(settings)) as two:
        sockets = [connect(s.ws_url, additional_headers=AUTH) for s in (one, two)]
        try:
            for ws in sockets:
                subscribe(ws, since="0-0")
            sent = [publish(redis_client, f"job-{n}", progress=n / 10) for n in range(10)]
            for ws in sockets:
                got: list[str] = []
                while len(got) < len(sent):
                    got += [e["id"] for e in receive_events(ws)]
                assert got == sent
        finally:
            for ws in sockets:
                ws.close()


def test_a_busy_socket_gets_batched_frames_and_loses_nothing(
    server: Any, redis_client: Any
) -> None:
    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws)
        wait_for(lambda: _hub_has_subscriber(server), what="the subscription")
        sent = [publish(redis_client, f"job-{n}") for n in range(500)]
        frames = 0
        got: list[str] = []
        while len(got) < len(sent):
            got += [e["id"] for e in receive_events(ws)]
            frames += 1
        assert got == sent
        assert frames < len(sent)  # events were batched into fewer frames


def _hub_has_subscriber(server: Any) -> bool:
    return bool(server.server.config.loaded_app and _hub(server).subscribers)


def _hub(server: Any) -> Any:
    app = server.server.config.app
    return app.state.hub


def open_raw_websocket(
    port: int, subscription: dict[str, Any], *, receive_buffer: int | None = 4096
) -> socket.socket:
    """A WebSocket client that subscribes and then reads only when told: no library
    reading in the background, and by default a tiny receive buffer, so the server's
    sends back up (``receive_buffer=None``: the kernel's default, as a browser has)."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = json.dumps(subscription).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


class FrameReader:
    """Reads a raw socket's server frames (unmasked, not fragmented, uncompressed);
    with ``pause``, slowly: at most ``chunk`` bytes, then a pause, and so on."""

    def __init__(
        self, sock: socket.socket, timeout: float = 30, *, chunk: int = 1 << 16, pause: float = 0
    ) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self.buffer = b""
        self.chunk = chunk
        self.pause = pause

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(self.chunk)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            self.buffer += chunk
            if self.pause:
                time.sleep(self.pause)  # a slow reader, by design
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def next(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)


def read_close_code(sock: socket.socket) -> int | None:
    """Read frames until a close frame; its status code."""
    frames = FrameReader(sock)
    while True:
        opcode, body = frames.next()
        if opcode == 0x8:
            return int.from_bytes(body[:2], "big") if len(body) >= 2 else None


def test_a_socket_that_does_not_read_is_closed_with_1013_and_others_keep_going(
    server: Any, redis_client: Any
) -> None:
    hub = _hub(server)
    hub.queue_size = 200  # so the test need not fill megabytes of socket buffers first
    payload = secrets.token_hex(1_000)  # incompressible
    slow = open_raw_websocket(server.port, {"action": "subscribe", "jobs": ["*"]})
    wait_for(lambda: len(hub.subscribers) == 1, what="the slow subscription")
    slow_subscriber = next(iter(hub.subscribers))
    with connect(server.ws_url, additional_headers=AUTH, ping_interval=None) as fast:
        subscribe(fast)
        wait_for(lambda: len(hub.subscribers) == 2, what="the fast subscription")
        sent: list[str] = []
        received: list[str] = []
        flooding = True

        def read_fast() -> None:
            while flooding or len(received) < len(sent):
                received.extend(e["id"] for e in receive_events(fast, timeout=20))

        reader = threading.Thread(target=read_fast)
        reader.start()
        while slow_subscriber in hub.subscribers:
            sent.append(publish(redis_client, f"job-{len(sent)}", message=payload))
            assert len(sent) < 20_000, "the slow socket was never closed"
            if len(sent) % 50 == 0:  # a pace the reading client keeps up with
                wait_for(lambda: len(received) >= len(sent) - 50, what="the fast client")
        flooding = False
        reader.join(60)
        assert received == sent
        assert len(hub.subscribers) == 1
        assert slow_subscriber not in hub.subscribers
        assert read_close_code(slow) == 1013
        wait_for(lambda: hub.open_sockets == 1, what="the closed socket to be counted out")
    slow.close()


def test_a_socket_that_stops_reading_gets_the_latest_progress_of_each_job_and_every_state_change(
    server: Any, redis_client: Any
) -> None:
    from db import live

    hub = _hub(server)
    hub.queue_size = 400  # behind at 100 pending; so the test need not fill megabytes
    payload = secrets.token_hex(1_000)  # incompressible
    slow = open_raw_websocket(server.port, {"action": "subscribe", "jobs": ["*"]})
    wait_for(lambda: len(hub.subscribers) == 1, what="the slow subscription")
    slow_subscriber = next(iter(hub.subscribers))
    jobs = [f"job-{n}" for n in range(5)]
    published: list[tuple[str, str, bool]] = []  # (stream id, job id, is progress)

    def publish_event(job_id: str, status: str, *, progress: bool, **fields: Any) -> None:
        job = {"id": job_id, "status": status, "parent_id": None, **fields}
        entry_id = redis_client.xadd(live.EVENTS_STREAM, live.encode_event(job, progress=progress))
        published.append((str(entry_id), job_id, progress))

    with connect(server.ws_url, additional_headers=AUTH, ping_interval=None) as fast:
        subscribe(fast)
        wait_for(lambda: len(hub.subscribers) == 2, what="the fast subscription")
        received: list[str] = []
        flooding = True

        def read_fast() -> None:
            while flooding or len(received) < len(published):
                received.extend(e["id"] for e in receive_events(fast, timeout=20))

        reader = threading.Thread(target=read_fast)
        reader.start()
        for job_id in jobs:
            publish_event(job_id, "running", progress=False, stage="starting")
        n = 0
        # Until conflation has replaced plenty of the slow socket's progress events.
        while slow_subscriber.conflated < 300:
            job_id = jobs[n % len(jobs)]
            if n % 50 == 49:  # now and then a state change (a new stage)
                publish_event(job_id, "running", progress=False, stage=f"stage-{n}")
            else:
                publish_event(job_id, "running", progress=True, progress_of=n, message=payload)
            n += 1
            assert n < 20_000, "the slow socket's progress was never conflated"
            if n % 50 == 0:  # a pace the reading client keeps up with
                wait_for(lambda: len(received) >= len(published) - 50, what="the fast client")
        for job_id in jobs:
            publish_event(job_id, "succeeded", progress=False)
        flooding = False
        reader.join(60)
        assert received == [entry_id for entry_id, _job, _progress in published]
        assert slow_subscriber in hub.subscribers  # conflated, not closed

    # The slow client reads at last: everything it gets is in stream order, no state
    # change is missing, and each job's progress ends with the newest published.
    frames = FrameReader(slow)
    got: list[dict[str, Any]] = []
    while len([e for e in got if e["job"]["status"] == "succeeded"]) < len(jobs):
        opcode, body = frames.next()
        assert opcode == 0x1, opcode
        got += frames_to_events(body)
    slow.close()
    got_ids = [e["id"] for e in got]
    order = {entry_id: index for index, (entry_id, _job, _progress) in enumerate(published)}
    assert [order[entry_id] for entry_id in got_ids] == sorted(order[i] for i in got_ids)
    state_changes = [entry_id for entry_id, _job, progress in published if not progress]
    assert [i for i in got_ids if i in set(state_changes)] == state_changes
    assert len(got) < len(published) - 250  # the conflated ones never went out
    for job_id in jobs:
        newest = [i for i, job, progress in published if job == job_id and progress][-1]
        assert newest in got_ids


@pytest.mark.serial  # a race of two paces: the publisher must outrun the reader
def test_a_socket_that_reads_slower_than_events_come_gets_them_conflated_not_late(
    server: Any, redis_client: Any
) -> None:
    """A client with the kernel's default buffers reads about 200 KB/s while 1 MB of
    events comes in two seconds. Fewer events than the log keeps, so only the lag (the
    oldest event it lacks came over ``LAG_LIMIT_S`` ago) marks it behind. Before the
    WebSocket's small send buffer (web/ws_protocol.py) and that rule, the kernel took
    it all, the hub saw nothing behind and every event went out, seconds late."""
    from db import live

    hub = _hub(server)
    assert len(hub.subscribers) == 0
    slow = open_raw_websocket(
        server.port, {"action": "subscribe", "jobs": ["*"]}, receive_buffer=None
    )
    wait_for(lambda: len(hub.subscribers) == 1, what="the subscription")
    payload = secrets.token_hex(1_250)  # 2.5 KB, incompressible
    jobs = [f"job-{n}" for n in range(5)]
    published: list[tuple[str, str, bool]] = []  # (stream id, job id, is progress)
    got: list[dict[str, Any]] = []

    def read_slowly() -> None:
        frames = FrameReader(slow, chunk=8_192, pause=0.04)  # about 200 KB/s
        finished = 0
        while finished < len(jobs):
            opcode, body = frames.next()
            assert opcode == 0x1, opcode
            events = frames_to_events(body)
            got.extend(events)
            finished += sum(e["job"]["status"] == "succeeded" for e in events)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    for n in range(400):
        job_id = jobs[n % len(jobs)]
        state_change = n < len(jobs) or n % 40 == 39
        job = {"id": job_id, "status": "running", "parent_id": None, "stage": f"stage-{n}"}
        if not state_change:
            job["message"] = payload
        entry_id = redis_client.xadd(
            live.EVENTS_STREAM, live.encode_event(job, progress=not state_change)
        )
        published.append((str(entry_id), job_id, not state_change))
        time.sleep(0.005)  # the publisher's pace: 200 events a second
    for job_id in jobs:
        done = {"id": job_id, "status": "succeeded", "parent_id": None}
        entry_id = redis_client.xadd(live.EVENTS_STREAM, live.encode_event(done))
        published.append((str(entry_id), job_id, False))
    reader.join(60)
    assert not reader.is_alive(), "the slow client never got every job's end"
    slow.close()

    got_ids = [e["id"] for e in got]
    order = {entry_id: index for index, (entry_id, _job, _progress) in enumerate(published)}
    assert [order[i] for i in got_ids] == sorted(order[i] for i in got_ids)
    state_changes = [entry_id for entry_id, _job, progress in published if not progress]
    assert [i for i in got_ids if i in set(state_changes)] == state_changes
    for job_id in jobs:
        newest = [i for i, job, progress in published if job == job_id and progress][-1]
        assert newest in got_ids
    assert len(got) < len(published) * 3 // 4, f"{len(got)} of {len(published)} went out"


@pytest.mark.serial
def test_the_event_loop_is_never_blocked_by_a_slow_download(
    server: Any, api: httpx.Client, worker: Any, media_server: Any
) -> None:
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/slow/slowest.mp4")}
    ).json()
    worst = 0.0
    answered = 0
    while api.get(f"/api/jobs/{job['id']}").json()["status"] not in FINISHED:
        started = time.monotonic()
        response = api.get("/api/jobs")
        worst = max(worst, time.monotonic() - started)
        assert response.status_code == 200
        answered += 1
    assert answered >= 5, "the download finished before the API was exercised"
    # Generous bound for a shared 2-core machine: a blocked loop would take seconds.
    assert worst < 1.0, worst


def refusal(url: str, headers: dict[str, str]) -> Any:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, open_timeout=5)
    return refused.value.response


def assert_too_many_websockets(response: Any, message_has: str) -> None:
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    error = json.loads(response.body)["error"]
    assert error["code"] == "too_many_websockets"
    assert message_has in error["message"]


def test_a_credential_over_its_websocket_cap_is_refused_with_429_until_one_closes(
    settings: Any,
) -> None:
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, max_websockets_per_credential=2))
    with live_server(app) as server:
        hub = app.state.hub
        first = connect(server.ws_url, additional_headers=AUTH)
        with connect(server.ws_url, additional_headers=AUTH):
            assert_too_many_websockets(refusal(server.ws_url, AUTH), "credential")
            with connect(server.ws_url, additional_headers=VIEWER_AUTH) as viewer:
                subscribe(viewer, since="0-0")  # another credential's socket works
            first.close()
            wait_for(lambda: hub.open_sockets == 1, what="the closed socket to be counted out")
            with connect(server.ws_url, additional_headers=AUTH) as again:
                subscribe(again)
                assert_too_many_websockets(refusal(server.ws_url, AUTH), "credential")


def test_a_process_over_its_websocket_cap_refuses_every_credential_until_one_closes(
    settings: Any,
) -> None:
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, max_websockets=2))
    with live_server(app) as server:
        hub = app.state.hub
        with connect(server.ws_url, additional_headers=AUTH):
            viewer = connect(server.ws_url, additional_headers=VIEWER_AUTH)
            for headers in (AUTH, VIEWER_AUTH):
                assert_too_many_websockets(refusal(server.ws_url, headers), "server")
            viewer.close()
            wait_for(lambda: hub.open_sockets == 1, what="the closed socket to be counted out")
            with connect(server.ws_url, additional_headers=VIEWER_AUTH):
                assert_too_many_websockets(refusal(server.ws_url, AUTH), "server")


def test_the_server_shutting_down_counts_its_sockets_out(settings: Any) -> None:
    from web.app import create_app

    app = create_app(settings)
    with live_server(app) as server:
        sockets = [connect(server.ws_url, additional_headers=h) for h in (AUTH, AUTH, VIEWER_AUTH)]
        wait_for(lambda: app.state.hub.open_sockets == 3, what="three sockets")
    try:
        assert app.state.hub.open_sockets == 0
        assert not app.state.hub.sockets_by_credential
    finally:
        for ws in sockets:
            ws.close()


def test_a_server_without_the_denial_extension_closes_a_socket_over_the_cap_with_1013(
    settings: Any,
) -> None:
    from web.app import create_app
    from web.hub import ProgressHub
    from web.ws import JobEvents

    app = create_app(dataclasses.replace(settings, max_websockets=0))
    app.state.hub = ProgressHub(settings.redis_url)  # never started: the refusal needs no Redis
    scope = {"type": "websocket", "path": "/ws", "headers": [], "app": app, "role": "admin"}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(JobEvents(scope, receive, send), timeout=10))
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": ""}]
    assert app.state.hub.open_sockets == 0


def old_encoding(events: list[dict[str, Any]]) -> str:
    """How frames were encoded before events were encoded once: decode, re-encode."""
    payload: Any = events[0] if len(events) == 1 else events
    return json.dumps(payload, separators=(",", ":"))


def test_a_frame_is_byte_for_byte_what_decoding_and_re_encoding_the_events_gave() -> None:
    from db import live
    from web.hub import Event, frame

    jobs = [
        {"id": "a", "status": "running", "parent_id": None, "progress": 0.1,
         "title": "Café – 東京 \"quoted\" \\ \n\t\u2028",
         "created_at": datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
         "live": {"downloaded_bytes": 2**60, "total_bytes": None, "speed": 1.5e16, "eta": -0.0}},
        {"id": "b", "status": "succeeded", "parent_id": "a", "flags": [True, False, {}, []],
         "ratio": float("inf"), "emoji": "🎬"},
    ]  # fmt: skip
    entries = [(f"1700000000000-{n}", live.encode_event(job)) for n, job in enumerate(jobs)]
    _keys, argv = live.publish_arguments(jobs[1])  # what the reporter's script XADDs
    entries.append(("1700000000001-0", {"job": str(argv[0])}))
    old = [live.decode_event(entry_id, fields) for entry_id, fields in entries]
    events = [Event(entry_id, fields) for entry_id, fields in entries]
    for one_old, one in zip(old, events, strict=True):
        assert frame([one]) == old_encoding([one_old])
    assert frame(events) == old_encoding(old)
    assert events[1].job == jobs[1]  # what a filter reads is the decoded job


def test_a_client_receives_the_same_text_as_before(server: Any, redis_client: Any) -> None:
    from db import live

    with connect(server.ws_url, additional_headers=AUTH) as ws:
        subscribe(ws, since="0-0", jobs=["wire"])
        event_id = publish(redis_client, "wire", title="Ünïcode", progress=0.25)
        text = ws.recv(timeout=10)
    ((entry_id, fields),) = redis_client.xrange(live.EVENTS_STREAM, min=event_id, max=event_id)
    assert text == old_encoding([live.decode_event(entry_id, fields)])
