"""``make load``: the fleet under everything at once, on loopback, bounded in time.

One run (issue 12 item 5): the Procfile's ``web`` line (``WEB_CONCURRENCY`` uvicorn
worker processes, default 2) and ``worker`` line (two processes), a fresh Redis and
database (:func:`bench.env.bench_env`), a loopback media server. First the API's
latency is measured **idle** (the request mix below, nothing else running); then, for
``--seconds`` (60): 1,000 WebSocket clients subscribed to every job (Node.js, split over
two processes, latency from each event's stream id, i.e. its ``XADD``, to its arrival),
about 50 API requests/s (lists, a job, a video, one new download a second), four
transcodes streaming at once (``/stream`` at 360p, each restarted when it ends) and a
thumbnail batch over the library. It prints errors and timeouts (goal 0), the API's p99
under load against idle (goal at most 2x), event delivery p50/p99, the web processes'
CPU and memory, and Redis's memory before and after (bounded: the stream is trimmed and
job keys expire). It exits 1 on any error or timeout, or when a job did not succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.backlog import FINISHED, MediaHandler, WorkerFleet, start_line, stop_group
from bench.env import BenchEnv, bench_env, free_port
from bench.report import table
from bench.streaming import usage_of
from bench.ws_fanout import ClientFleet, ensure_client_deps
from tests.support import descendants, make_clip

SOCKETS = 1000
CLIENT_PROCESSES = 2
API_RATE = 50.0  # requests a second, all kinds together
DOWNLOAD_EVERY_S = 1.0
TRANSCODES = 4
IDLE_SECONDS = 10.0
SEED_VIDEOS = 8
CLIP_SECONDS = 20
REQUEST_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 180.0
READY_TIMEOUT_S = 60.0
GOAL_P99_RATIO = 2.0
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Outcomes:
    """What went wrong, by kind, and the latencies of what went right."""

    errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    by_label: dict[str, list[float]] = field(default_factory=dict)

    def took(self, label: str, ms: float) -> None:
        self.latencies_ms.append(ms)
        self.by_label.setdefault(label, []).append(ms)

    def error(self, what: str) -> None:
        self.errors[what] += 1

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float | None:
        return percentile(self.latencies_ms, 99)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class WebFleet:
    """The Procfile's ``web`` line (uvicorn, ``WEB_CONCURRENCY`` workers) in a process
    group of its own, on a free port."""

    def __init__(self, env: BenchEnv, processes: int) -> None:
        self.port = free_port()
        self.log_path = env.root / "web.log"
        self.environment = dict(
            os.environ,
            PORT=str(self.port),
            VIDFLEET_HOST="127.0.0.1",
            WEB_CONCURRENCY=str(processes),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_line("web", self.environment, self.log_path)
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the web line exited early:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the web did not answer:\n{self.log_tail()}")
                time.sleep(0.1)  # polling a process we just started

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            stop_group(self.process, timeout)


def group_usage(pgid: int) -> tuple[float, int]:
    """CPU seconds and resident bytes of the live processes of group ``pgid``."""
    return usage_of(lambda _pid, fields: int(fields[2]) == pgid and fields[0] != "Z")


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-file (yt-dlp probing, then fetching) is no error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class MediaServer:
    """``/media/<anything>.mp4`` answers the run's clip (see :class:`MediaHandler`)."""

    def __init__(self, clip: Path) -> None:
        handler = type("ClipHandler", (MediaHandler,), {"video": clip.read_bytes()})
        self.server = QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.names = itertools.count()

    def start(self) -> None:
        self.thread.start()

    def next_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/media/clip-{next(self.names)}.mp4"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Api:
    """The run's API client: every call timed and its failures counted in ``outcomes``."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT_S,
            # Idle connections dropped before uvicorn's own keep-alive timeout (5 s)
            # closes them: otherwise a request sent as the server closes its connection
            # fails with RemoteProtocolError, a race of the client's, not an error.
            limits=httpx.Limits(max_connections=64, keepalive_expiry=2.0),
        )
        self.job_ids: list[str] = []
        self.video_ids: list[int] = []

    async def call(self, outcomes: Outcomes, label: str, method: str, path: str, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, **kw)
        except httpx.TimeoutException:
            outcomes.timeouts[label] += 1
            return None
        except httpx.TransportError as exc:
            outcomes.error(f"{label}: {type(exc).__name__}")
            return None
        outcomes.took(label, (time.perf_counter() - started) * 1000)
        if response.status_code >= 300:
            outcomes.error(f"{label}: HTTP {response.status_code}")
            return None
        return response.json()

    async def download(self, outcomes: Outcomes, url: str) -> None:
        body = await self.call(
            outcomes, "POST /api/videos/download", "POST", "/api/videos/download", json={"url": url}
        )
        if body is not None:
            self.job_ids.append(body["job"]["id"] if "job" in body else body["id"])

    async def one_read(self, outcomes: Outcomes, n: int) -> None:
        """One request of the read mix, chosen by ``n``."""
        kind = n % 4
        if kind == 0 or not self.job_ids:
            await self.call(outcomes, "GET /api/jobs", "GET", "/api/jobs", params={"limit": 50})
        elif kind == 1:
            await self.call(outcomes, "GET /api/videos", "GET", "/api/videos", params={"limit": 48})
        elif kind == 2:
            job = self.job_ids[n % len(self.job_ids)]
            await self.call(outcomes, "GET /api/jobs/{id}", "GET", f"/api/jobs/{job}")
        elif self.video_ids:
            video = self.video_ids[n % len(self.video_ids)]
            await self.call(outcomes, "GET /api/videos/{id}", "GET", f"/api/videos/{video}")
        else:
            await self.call(outcomes, "GET /api/jobs", "GET", "/api/jobs", params={"limit": 50})

    async def close(self) -> None:
        await self.client.aclose()


async def request_mix(
    api: Api, outcomes: Outcomes, seconds: float, media: MediaServer | None
) -> None:
    """``API_RATE`` requests a second for ``seconds``, each started on the clock (an
    open loop: a slow answer does not slow the arrivals), plus one download a second
    when ``media`` is given."""
    started = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    every = round(API_RATE * DOWNLOAD_EVERY_S)
    for n in itertools.count():
        at = started + n / API_RATE
        if at - started >= seconds:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        # On the schedule, not the clock: a run that falls behind sends as many
        # downloads as one that keeps up.
        if media is not None and n % every == 0:
            coro = api.download(outcomes, media.next_url())
        else:
            coro = api.one_read(outcomes, n)
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def transcode_loop(api: Api, outcomes: Outcomes, slot: int, until: float) -> int:
    """Stream transcodes of the library's videos back to back until ``until``; each
    starts at a different second so none is served from the stream cache. Returns the
    bytes received."""
    received = 0
    for n in itertools.count():
        if time.monotonic() >= until:
            break
        video = api.video_ids[(slot + n) % len(api.video_ids)]
        start = (slot * 7 + n) % (CLIP_SECONDS - 2)
        params: dict[str, str | int] = {"quality": "360p", "format": "mp4", "start": start}
        started = time.perf_counter()
        try:
            async with api.client.stream("GET", f"/stream/{video}", params=params) as response:
                if response.status_code != 200:
                    outcomes.error(f"GET /stream/{{id}}: HTTP {response.status_code}")
                    await asyncio.sleep(1)  # the next try, not a wait for work
                    continue
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
        except httpx.TimeoutException:
            outcomes.timeouts["GET /stream/{id}"] += 1
            continue
        except httpx.TransportError as exc:
            outcomes.error(f"GET /stream/{{id}}: {type(exc).__name__}")
            continue
        outcomes.took("GET /stream/{id}", (time.perf_counter() - started) * 1000)
    return received


async def wait_for_jobs(api: Api, ids: list[str], timeout: float) -> Counter[str]:
    """Poll until every job in ``ids`` has finished; their statuses (``unfinished``
    for any still going at the deadline)."""
    deadline = time.monotonic() + timeout
    pending, statuses = list(ids), Counter[str]()
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            response = await api.client.get(f"/api/jobs/{job_id}")
            status = response.json().get("status") if response.status_code == 200 else None
            if status in FINISHED:
                statuses[status] += 1
            else:
                still.append(job_id)
        pending = still
        if pending:
            await asyncio.sleep(0.5)  # polling the API with a deadline
    statuses["unfinished"] += len(pending)
    return statuses


async def library_ids(api: Api) -> list[int]:
    response = await api.client.get("/api/videos", params={"limit": 100})
    response.raise_for_status()
    return [int(video["id"]) for video in response.json()["items"]]


def redis_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


@dataclass
class LoadResult:
    web_processes: int
    seconds: float
    idle: Outcomes
    loaded: Outcomes
    streams: Outcomes
    ws: dict[str, Any]
    jobs: Counter[str]
    batch: str | None
    web_cpu_s: float
    web_rss_bytes: int
    redis_before: int
    redis_after: int
    stream_length: int
    keys_without_ttl: int
    transcoded_bytes: int

    @property
    def errors(self) -> Counter[str]:
        errors = self.idle.errors + self.loaded.errors + self.streams.errors
        for code, count in self.ws.get("closes", {}).items():
            errors[f"WebSocket closed {code}"] += int(count)
        for what, count in self.ws.get("errors", {}).items():
            errors[f"WebSocket {what}"] += int(count)
        if self.ws.get("failed"):
            errors["WebSocket connect failed"] += int(self.ws["failed"])
        if self.ws.get("duplicates"):
            errors["WebSocket duplicate events"] += int(self.ws["duplicates"])
        for status, count in self.jobs.items():
            if status != "succeeded":
                errors[f"job {status}"] += count
        if self.batch != "succeeded":
            errors[f"thumbnail batch {self.batch}"] += 1
        return errors

    @property
    def timeouts(self) -> Counter[str]:
        return self.idle.timeouts + self.loaded.timeouts + self.streams.timeouts

    @property
    def ratio(self) -> float | None:
        if self.idle.p99 is None or self.loaded.p99 is None:
            return None
        return self.loaded.p99 / self.idle.p99

    def render(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        lines = [
            f"Load: {self.seconds:.0f} s, WEB_CONCURRENCY={self.web_processes}, two worker "
            f"processes, {SOCKETS} WebSockets over {CLIENT_PROCESSES} Node.js processes, "
            f"{API_RATE:.0f} API requests/s, {TRANSCODES} transcodes, one thumbnail batch",
            table(
                ["API", "requests", "p50 ms", "p99 ms"],
                [
                    [
                        "idle",
                        str(len(self.idle.latencies_ms)),
                        ms(self.idle.p50),
                        ms(self.idle.p99),
                    ],
                    [
                        "under load",
                        str(len(self.loaded.latencies_ms)),
                        ms(self.loaded.p50),
                        ms(self.loaded.p99),
                    ],
                ],
            ),
            table(
                ["route", "idle p50", "idle p99", "loaded p50", "loaded p99"],
                [
                    [
                        label,
                        ms(percentile(self.idle.by_label.get(label, []), 50)),
                        ms(percentile(self.idle.by_label.get(label, []), 99)),
                        ms(percentile(times, 50)),
                        ms(percentile(times, 99)),
                    ]
                    for label, times in sorted(self.loaded.by_label.items())
                ],
            ),  # fmt: skip
            f"jobs: {dict(self.jobs)}; thumbnail batch: {self.batch}; transcodes: "
            f"{len(self.streams.latencies_ms)} streams, {self.transcoded_bytes / 1e6:.1f} MB",
            f"WebSockets: {self.ws.get('opened', 0)} opened, {self.ws.get('open', 0)} open at "
            f"the end, {self.ws.get('events', 0)} events in {self.ws.get('frames', 0)} frames",
            f"web: {self.web_cpu_s / self.seconds * 100:.0f} % of a core over the run, "
            f"{self.web_rss_bytes / 2**20:.0f} MiB resident at the end",
            f"Redis: {self.redis_before / 2**20:.1f} MiB before, "
            f"{self.redis_after / 2**20:.1f} MiB after; "
            f"the stream holds {self.stream_length} entries; "
            f"{self.keys_without_ttl} job keys without a TTL",
        ]
        if self.errors or self.timeouts:
            lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in self.errors.items()))
            lines.append("timeouts: " + ", ".join(f"{k} x{v}" for k, v in self.timeouts.items()))
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        goal = "meets" if self.ratio is not None and self.ratio <= GOAL_P99_RATIO else "misses"
        lines.append(
            f"errors {sum(self.errors.values())}, timeouts {sum(self.timeouts.values())} "
            f"(goal 0); API p99 under load / idle {ratio} ({goal} the goal of "
            f"{GOAL_P99_RATIO:.0f}x); event delivery p50 {ms(self.ws.get('p50_ms'))} ms, "
            f"p99 {ms(self.ws.get('p99_ms'))} ms"
        )
        return "\n".join(lines)


def job_keys_without_ttl(client: redis.Redis) -> int:
    """Job snapshot keys Redis would keep for ever (each must expire)."""
    return sum(1 for key in client.scan_iter("vf:job:*", count=1000) if client.ttl(key) == -1)


async def drive(env: BenchEnv, web: WebFleet, media: MediaServer, seconds: float) -> LoadResult:
    client = redis.Redis.from_url(env.redis_url)
    api = Api(web.url, env.admin_token)
    idle, loaded, streams = Outcomes(), Outcomes(), Outcomes()
    try:
        seeds = []
        for _ in range(SEED_VIDEOS):
            await api.download(idle, media.next_url())
            seeds.append(api.job_ids[-1])
        seeded = await wait_for_jobs(api, seeds, SETTLE_TIMEOUT_S)
        if seeded["succeeded"] != SEED_VIDEOS:
            raise RuntimeError(f"the library's seed downloads ended {dict(seeded)}")
        api.video_ids = await library_ids(api)

        print(f"idle: {IDLE_SECONDS:.0f} s of the request mix", file=sys.stderr)
        await request_mix(api, idle, IDLE_SECONDS, None)
        redis_before = redis_memory(client)

        print(f"opening {SOCKETS} WebSockets", file=sys.stderr)
        fleet = await asyncio.to_thread(
            ClientFleet,
            "ws",
            web.url.replace("http", "ws") + "/ws",
            SOCKETS,
            env.admin_token,
            CLIENT_PROCESSES,
            clock="stream",
        )
        try:
            fleet.command("start load", "started")
            cpu_before, _ = group_usage(web.process.pid)  # type: ignore[union-attr]
            first_download = len(api.job_ids)
            print(f"load: {seconds:.0f} s", file=sys.stderr)
            batch = await api.call(
                loaded,
                "POST /api/videos/bulk/thumbnails",
                "POST",
                "/api/videos/bulk/thumbnails",
                json={"all": True},
            )
            until = time.monotonic() + seconds
            loops = asyncio.gather(
                *(transcode_loop(api, streams, slot, until) for slot in range(TRANSCODES))
            )
            _, received = await asyncio.gather(request_mix(api, loaded, seconds, media), loops)
            cpu_after, rss = group_usage(web.process.pid)  # type: ignore[union-attr]
            downloads = api.job_ids[first_download:]
            batch_id = batch["job"]["id"] if batch and "job" in batch else (batch or {}).get("id")
            everything = downloads + ([batch_id] if batch_id else [])
            statuses = await wait_for_jobs(api, everything, SETTLE_TIMEOUT_S)
            batch_status = None
            if batch_id:
                response = await api.client.get(f"/api/jobs/{batch_id}")
                batch_status = response.json().get("status")
                statuses[batch_status] -= 1
                statuses += Counter()  # drop the zero
            ws = fleet.stats()
        finally:
            fleet.close()
        return LoadResult(
            web_processes=int(web.environment["WEB_CONCURRENCY"]),
            seconds=seconds,
            idle=idle,
            loaded=loaded,
            streams=streams,
            ws=ws,
            jobs=statuses,
            batch=batch_status,
            web_cpu_s=cpu_after - cpu_before,
            web_rss_bytes=rss,
            redis_before=redis_before,
            redis_after=redis_memory(client),
            stream_length=int(client.xlen("vf:events")),
            keys_without_ttl=job_keys_without_ttl(client),
            transcoded_bytes=sum(received),
        )
    finally:
        await api.close()
        client.close()


def pin(pids: set[int], cpus: set[int]) -> None:
    """Every thread of ``pids`` on ``cpus`` (what they start later inherits it)."""
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


def run_load(*, seconds: float, web_processes: int, split: bool = False) -> LoadResult:
    ensure_client_deps()
    with bench_env() as env:
        os.environ.update(
            VIDFLEET_MAX_TRANSCODES=str(2 * TRANSCODES),
            VIDFLEET_MAX_TRANSCODES_PER_CLIENT=str(2 * TRANSCODES),
        )
        clip = make_clip(env.root / "clip.mp4", seconds=CLIP_SECONDS)
        media = MediaServer(clip)
        media.start()
        web = WebFleet(env, web_processes)
        workers = WorkerFleet(env)
        try:
            web.start()
            workers.start(redis.Redis.from_url(env.redis_url))
            if split:
                # The fleet (web, workers, Redis, and what they start) on the first
                # CPU; this driver and the Node.js clients it starts next on the rest,
                # as if the load came from another machine.
                pin(descendants(os.getpid()), {0})  # the clients are not started yet
                pin({os.getpid()}, set(range(1, os.cpu_count() or 2)))
            return asyncio.run(drive(env, web, media, seconds))
        finally:
            web.stop()
            workers.stop()
            media.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="the loaded phase (60)")
    parser.add_argument(
        "--web-concurrency",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "2")),
        help="uvicorn worker processes for the web line (WEB_CONCURRENCY, default 2)",
    )
    parser.add_argument(
        "--split-cpus",
        action="store_true",
        help="the fleet on CPU 0, the load's clients on the others (an experiment: the web "
        "without its clients taking its CPU; needs 2 or more CPUs)",
    )
    args = parser.parse_args(argv)
    if not 5 <= args.seconds <= 600 or not 1 <= args.web_concurrency <= 16:
        parser.error("--seconds: 5 to 600; --web-concurrency: 1 to 16")
    if args.split_cpus and (os.cpu_count() or 1) < 2:
        parser.error("--split-cpus: needs at least 2 CPUs")
    started = time.monotonic()
    result = run_load(
        seconds=args.seconds, web_processes=args.web_concurrency, split=args.split_cpus
    )
    print(f"done in {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs", file=sys.stderr)
    print(result.render())
    return 1 if result.errors or result.timeouts else 0


if __name__ == "__main__":
    sys.exit(main())
