"""Benchmark 1, HTTP latency: the real app (``web.app:create_app``) runs under a real
uvicorn server in a child process (so the load generator does not share its GIL), on a
database seeded with a few hundred jobs and with no worker, so every download it
accepts just stays queued. An asyncio ``httpx`` load generator with a few concurrent
clients measures ``GET /healthz`` (the anchor: the cheapest route through the same
stack), ``POST /api/videos/download`` (a distinct URL each time, bearer token) and
``GET /api/jobs``, in interleaved rounds after a warm-up, and reports p50/p99 of each
as milliseconds and as a ratio to ``/healthz``, and the server's CPU time per request
(from ``/proc``: unlike latency, it hardly moves when other work shares the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.child import ChildServer
from bench.env import BenchEnv
from bench.report import percentile, table

CONCURRENCY = 8
SEED_JOBS = 300
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HttpPlan:
    """How many requests of each endpoint one round sends, and how many rounds."""

    rounds: int
    warmup: int
    healthz: int
    download: int
    list_jobs: int


FULL = HttpPlan(rounds=5, warmup=100, healthz=1000, download=300, list_jobs=400)
QUICK = HttpPlan(rounds=1, warmup=50, healthz=300, download=100, list_jobs=100)

# (method, path, JSON body or None)
Request = tuple[str, str, dict[str, Any] | None]


@dataclass(frozen=True)
class Endpoint:
    """One route under test: how to build its n-th request and what it must answer."""

    name: str
    make: Callable[[], Request]
    expect: int
    count: Callable[[HttpPlan], int]


@dataclass
class HttpResult:
    """Every latency (seconds) seen per endpoint; the first endpoint is the anchor."""

    endpoints: list[str]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)  # seconds, all rounds
    seeded_jobs: int = SEED_JOBS
    jobs_after: int = 0

    def render(self) -> str:
        anchor = self.latencies[self.endpoints[0]]
        anchor_p50, anchor_p99 = percentile(anchor, 50), percentile(anchor, 99)
        rows = []
        for i, name in enumerate(self.endpoints):
            samples = self.latencies[name]
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            cpu = self.server_cpu.get(name)
            rows.append(
                [
                    name + (" (anchor)" if i == 0 else ""),
                    str(len(samples)),
                    f"{p50 * 1000:.2f}",
                    f"{p99 * 1000:.2f}",
                    f"{p50 / anchor_p50:.2f}x",
                    f"{p99 / anchor_p99:.2f}x",
                    f"{cpu / len(samples) * 1000:.2f}" if cpu is not None else "-",
                ]
            )
        header = [
            "endpoint", "requests", "p50 ms", "p99 ms", "p50/healthz", "p99/healthz",
            "server CPU ms/req",
        ]  # fmt: skip
        intro = (
            f"HTTP latency: uvicorn child process, {CONCURRENCY} concurrent httpx clients, "
            f"jobs table {self.seeded_jobs} -> {self.jobs_after} rows"
        )
        return f"{intro}\n{table(header, rows)}"


class UvicornProcess(ChildServer):
    """``uvicorn --factory web.app:create_app`` in a child process on a free port."""

    name = "uvicorn"

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env, "uvicorn")

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "--factory", "web.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip


def process_cpu(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` so far (None without ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_jobs(database_url: str, count: int) -> None:
    """Insert ``count`` finished download jobs, one second apart, for ``GET /api/jobs``."""
    from db.engine import make_engine, session_factory
    from db.models import Job, JobKind, JobStatus

    engine = make_engine(database_url)
    start = datetime.now(UTC) - timedelta(seconds=count)
    try:
        with session_factory(engine).begin() as session:
            for i in range(count):
                created = start + timedelta(seconds=i)
                session.add(
                    Job(
                        id=str(uuid.uuid4()),
                        kind=JobKind.download,
                        status=JobStatus.succeeded if i % 5 else JobStatus.failed,
                        queue="interactive",
                        params={"url": f"http://127.0.0.1/media/seed-{i}.mp4", "quality": "best"},
                        result={"video_id": i} if i % 5 else None,
                        error=None if i % 5 else {"type": "http_error", "message": "404"},
                        progress=1.0,
                        stage="succeeded" if i % 5 else "failed",
                        attempts=1,
                        created_at=created,
                        started_at=created,
                        finished_at=created,
                        updated_at=created,
                    )
                )
    finally:
        engine.dispose()


def count_jobs(database_url: str) -> int:
    from sqlalchemy import func, select

    from db.engine import make_engine, session_factory
    from db.models import Job

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)
    finally:
        engine.dispose()


async def measure(clients: list[httpx.AsyncClient], endpoint: Endpoint, count: int) -> list[float]:
    """Send ``count`` requests, each client in a closed loop; the latency of each."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def one_client(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            method, path, body = endpoint.make()
            started = time.perf_counter()
            response = await client.request(method, path, json=body)
            elapsed = time.perf_counter() - started
            if response.status_code != endpoint.expect:
                raise RuntimeError(
                    f"{endpoint.name} answered {response.status_code}: {response.text[:300]}"
                )
            latencies.append(elapsed)

    await asyncio.gather(*(one_client(client) for client in clients))
    return latencies


async def drive(
    base_url: str, token: str, plan: HttpPlan, server_pid: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The latencies of each endpoint, and the server's CPU seconds while measuring it."""
    songs = itertools.count()

    def download() -> Request:
        url = f"http://127.0.0.1:9/media/song-{next(songs)}.mp4"
        return "POST", "/api/videos/download", {"url": url}

    endpoints = [
        Endpoint("GET /healthz", lambda: ("GET", "/healthz", None), 200, lambda p: p.healthz),
        Endpoint("POST /api/videos/download", download, 202, lambda p: p.download),
        Endpoint("GET /api/jobs", lambda: ("GET", "/api/jobs", None), 200, lambda p: p.list_jobs),
    ]
    results: dict[str, list[float]] = {e.name: [] for e in endpoints}
    cpu: dict[str, float] = {}
    # One client (one keep-alive connection) per concurrent client, not one pool of
    # CONCURRENCY connections shared by all: httpcore's pool hands an idle connection to
    # every queued request at once and the losers retry (ConnectionNotAvailable, as in
    # encode/httpcore#822): 6,273 retries in 8,800 requests, some requests waiting
    # 0.3-4 s before their first byte was sent. That wait, in the load generator, was
    # most of every endpoint's p99 until 2026-12-07 (bench/README.md section 1).
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    headers={"Authorization": f"Bearer {token}"},
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=REQUEST_TIMEOUT_S,
                )
            )
            for _ in range(CONCURRENCY)
        ]
        for endpoint in endpoints:
            await measure(clients, endpoint, plan.warmup)
        for _ in range(plan.rounds):
            for endpoint in endpoints:
                before = process_cpu(server_pid)
                results[endpoint.name] += await measure(clients, endpoint, endpoint.count(plan))
                after = process_cpu(server_pid)
                if before is not None and after is not None:
                    cpu[endpoint.name] = cpu.get(endpoint.name, 0.0) + after - before
    return results, cpu


def run_http(env: BenchEnv, *, quick: bool) -> HttpResult:
    """Seed the jobs table, start uvicorn, measure the three endpoints, stop uvicorn."""
    plan = QUICK if quick else FULL
    seed_jobs(env.database_url, SEED_JOBS)
    server = UvicornProcess(env)
    try:
        server.start()
        latencies, cpu = asyncio.run(drive(server.url, env.admin_token, plan, server.pid))
    finally:
        server.stop()
    return HttpResult(
        endpoints=list(latencies),
        latencies=latencies,
        server_cpu=cpu,
        jobs_after=count_jobs(env.database_url),
    )
