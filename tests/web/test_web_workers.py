"""The Procfile's web line as a process: with ``WEB_CONCURRENCY=2`` one uvicorn runs two
worker processes, each with its own stream reader, and a client on either sees every
event once; ``VIDFLEET_WS_COMPRESSION`` decides whether permessage-deflate is
negotiated (off unless set); and while 500 busy sockets take a flood of events, a new
socket still connects and gets its first event within a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ADMIN_TOKEN
from tests.support import frames_to_events, wait_for
from tests.web.conftest import WebProcess, worker_pids

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WORKERS = 2


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def serving_pid(ws: ClientConnection, port: int, pids: list[int]) -> int:
    """Which worker holds the server end of this client's TCP connection."""
    client_port = ws.socket.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            inode = int(fields[9])
    assert inode, "the server end of the connection was not found"
    owners = [pid for pid in pids if inode in socket_inodes(pid)]
    assert len(owners) == 1, owners
    return owners[0]


def publish(redis_client: Any, job_id: str) -> str:
    from db import live

    job = {"id": job_id, "status": "running", "parent_id": None, "progress": 0.5}
    return str(redis_client.xadd(live.EVENTS_STREAM, live.encode_event(job)))


def test_two_workers_each_read_the_stream_and_every_client_sees_every_event_once(
    start_web: Callable[..., WebProcess], redis_client: Any
) -> None:
    process, port = start_web(WEB_CONCURRENCY=str(WORKERS))
    pids = worker_pids(process.pid)
    assert len(pids) == WORKERS
    url = f"ws://127.0.0.1:{port}/ws"
    clients: list[ClientConnection] = []
    served_by: dict[int, int] = {}
    try:
        # The kernel picks the worker that accepts; connect until both serve some.
        while len(clients) < 6 or len(set(served_by.values())) < WORKERS:
            assert len(clients) < 60, f"every client landed on one worker: {served_by}"
            ws = connect(url, additional_headers=AUTH, open_timeout=10)
            clients.append(ws)
            served_by[id(ws)] = serving_pid(ws, port, pids)
        before = publish(redis_client, "before")
        for ws in clients:
            # Resuming after ``before``: what is published while the subscription is
            # set up is replayed, so each client must get exactly what follows.
            ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": before}))
        sent = [publish(redis_client, f"job-{n}") for n in range(50)]
        for ws in clients:
            got: list[str] = []
            while len(got) < len(sent):
                got += [event["id"] for event in frames_to_events(ws.recv(timeout=10))]
            assert got == sent, served_by[id(ws)]
        # Nothing more follows: no worker sends an event twice.
        for ws in clients:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)
    finally:
        for ws in clients:
            ws.close()
    assert len(set(served_by.values())) == WORKERS


@pytest.mark.parametrize(("setting", "negotiated"), [(None, False), ("true", True)])
def test_permessage_deflate_is_negotiated_only_when_the_setting_turns_it_on(
    start_web: Callable[..., WebProcess], setting: str | None, negotiated: bool
) -> None:
    _process, port = start_web(**({"VIDFLEET_WS_COMPRESSION": setting} if setting else {}))
    # The client offers it, as browsers do.
    with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=AUTH, compression="deflate") as ws:
        extensions = [extension.name for extension in ws.protocol.extensions]
    assert extensions == (["permessage-deflate"] if negotiated else [])


@pytest.mark.serial
def test_a_new_socket_is_served_within_a_second_while_500_busy_ones_take_a_flood(
    start_web: Callable[..., WebProcess], settings: Any, redis_client: Any
) -> None:
    from db import live
    from web.hub import parse_stream_id

    _process, port = start_web()
    crowd = subprocess.Popen(
        [sys.executable, "-m", "tests.web.ws_crowd", str(port), "500"],
        cwd=ROOT,
        env={**os.environ, "CROWD_TOKEN": ADMIN_TOKEN},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    flooding = threading.Event()
    published = 0

    def flood() -> None:
        # 2,000 events/s, more than the server can send to 500 sockets on this machine:
        # the progress of 40 running jobs, a state change every 20th.
        nonlocal published
        client = live.sync_client(settings.redis_url)
        with client:
            while flooding.is_set():
                with client.pipeline(transaction=False) as pipe:
                    for _ in range(20):
                        job = {"id": f"job-{published % 40}", "status": "running", "n": published}
                        progress = published % 20 != 19
                        pipe.xadd(live.EVENTS_STREAM, live.encode_event(job, progress=progress))
                        published += 1
                    pipe.execute()
                time.sleep(0.01)  # the publisher's pace, not a wait for the server

    publisher = threading.Thread(target=flood)
    try:
        assert crowd.stdout is not None and crowd.stdin is not None
        assert crowd.stdout.readline().strip() == "ready"
        flooding.set()
        publisher.start()
        wait_for(lambda: published > 10_000, what="the flood to be under way")
        started = time.monotonic()
        newest = parse_stream_id(redis_client.xrevrange(live.EVENTS_STREAM, count=1)[0][0])
        with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=AUTH, open_timeout=5) as ws:
            ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": None}))
            # Its first event published after it connected, not one a lagging reader
            # still had to hand out.
            fresh: list[str] = []
            while not fresh:
                events = frames_to_events(ws.recv(timeout=5))
                fresh = [e["id"] for e in events if parse_stream_id(e["id"]) > newest]
            took = time.monotonic() - started
        assert took < 1.0, f"a new socket waited {took:.2f} s for a new event"
        crowd.stdin.write("stop\n")
        crowd.stdin.flush()
        report = json.loads(crowd.stdout.readline())
    finally:
        flooding.clear()
        if publisher.is_alive():
            publisher.join(10)
        crowd.kill()
        crowd.wait()
    assert report["open"] == 500, report["closed"]  # busy, but none closed
    assert min(report["events"]) > 0
