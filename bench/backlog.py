"""Benchmark 9, a backlog at scale (issue 15 item 7): N downloads (10,000; ``--quick``
1,000) queued through the real web API (``POST /api/videos/download`` on uvicorn in a
child process, bearer admin token) while the Procfile's ``worker`` line runs (two
worker processes, started through ``sh -c`` as honcho and Heroku start it). The URLs
point at a loopback server in this process that answers nine in ten with 404 at once
and serves a tiny generated mp4 (1 s, 64x64) for the tenth. It runs in a world of its
own (:func:`bench.env.bench_env`: a fresh Redis and database), so the jobs other
benchmarks leave queued do not join the backlog.

Measured: jobs/s from the first POST to the last job finished; the fleet's CPU per job
(user + system of every process under the worker line, with the children each reaped,
from ``/proc``); events per job (every entry added to ``vf:events`` during the run, read
as it is written so the stream's trimming loses none); Redis's ``used_memory`` after the
run minus before; the wait from POST to start of the first and of the last job. Every
job must end as its URL says (succeeded, or failed ``not_found``). The anchor: the same
URLs through yt-dlp's Python API, one ``YoutubeDL`` in this process, one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from bench.child import REPO
from bench.env import BenchEnv, bench_env
from bench.http_latency import UvicornProcess, process_cpu
from bench.report import table
from web.launch import procfile_command

CONCURRENCY = 8
MEDIA_EVERY = 10  # one URL in ten is a file, the others 404
WORKER_PROCESSES = 2
WORKER_THREADS = 4
READY_TIMEOUT_S = 90.0
STALL_TIMEOUT_S = 180.0  # no job finished for this long: the run is stuck
POLL_S = 1.0
REQUEST_TIMEOUT_S = 60.0
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
FORK_SERVER_MARK = b"serve_forks"
GOAL_RATE = 20.0
GOAL_EVENTS_BASE = 8.0
GOAL_EVENTS_PER_DOWNLOAD_S = 2.0
GOAL_MB_PER_10K = 5.0
FINISHED = ("succeeded", "failed", "cancelled")
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def make_tiny_video(path: Path) -> Path:
    """A 1 s, 64x64 H.264 + AAC mp4 from FFmpeg's lavfi test sources."""
    from media.ffmpeg import ffmpeg_path

    subprocess.run(
        [
            ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


class MediaHandler(BaseHTTPRequestHandler):
    """``/media/<name>.mp4``: the tiny file; anything else: 404 at once."""

    protocol_version = "HTTP/1.1"
    video = b""

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, *, body: bool) -> None:
        if not self.path.startswith("/media/"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.video)))
        self.end_headers()
        if body:
            self.wfile.write(self.video)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)


def backlog_urls(port: int, count: int) -> list[str]:
    """``count`` distinct URLs, every ``MEDIA_EVERY``-th one a file, the rest missing."""
    base = f"http://127.0.0.1:{port}"
    return [
        f"{base}/media/clip-{n}.mp4" if n % MEDIA_EVERY == 0 else f"{base}/missing/clip-{n}.mp4"
        for n in range(count)
    ]


def _stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""


def descendants(root: int) -> dict[str, list[str]]:
    """``/proc/<pid>/stat`` fields (after the name) of ``root`` and every process below it."""
    stats = {
        name: fields for name in os.listdir("/proc") if name.isdigit() and (fields := _stat(name))
    }
    children: dict[str, list[str]] = {}
    for pid, fields in stats.items():
        children.setdefault(fields[1], []).append(pid)
    found: dict[str, list[str]] = {}
    todo = [str(root)]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[pid] = stats[pid]
            todo += children.get(pid, [])
    return found


def fleet_cpu(root: int) -> dict[str, tuple[float, float, str]]:
    """Per process under ``root``: (own CPU s, CPU s of the children it reaped, role).
    A worker process reaps its download children (it is their subreaper)."""
    processes = descendants(root)
    cpu = {}
    for pid, fields in processes.items():
        cmdline = _cmdline(pid)
        if FORK_SERVER_MARK in cmdline:
            role = "fork servers"
        elif b"dramatiq" in cmdline:
            parent = processes.get(fields[1])
            worker = parent is not None and b"dramatiq" in _cmdline(fields[1])
            role = "worker processes" if worker else "dramatiq main"
        else:
            role = cmdline.split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1] or "?"
        own = (int(fields[11]) + int(fields[12])) * TICK_S
        reaped = (int(fields[13]) + int(fields[14])) * TICK_S
        cpu[pid] = (own, reaped, role)
    return cpu


Entry = tuple[str, dict[str, str]]


class EventCounter(threading.Thread):
    """Reads every entry added to ``vf:events`` after ``start_id`` as it arrives (the
    stream is trimmed to its budget, so counting at the end could miss some), and
    counts them by the job status they carry, progress reports apart."""

    def __init__(self, client: redis.Redis, start_id: str) -> None:
        super().__init__(name="event-counter", daemon=True)
        self.client = client
        self.last_id = start_id
        self.kinds: Counter[str] = Counter()
        self.jobs: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.read(block_ms=500)

    def read(self, *, block_ms: int | None) -> int:
        answer = cast(
            list[tuple[str, list[Entry]]],
            self.client.xread({"vf:events": self.last_id}, count=2000, block=block_ms),
        )
        seen = 0
        for _, entries in answer or []:
            for entry_id, fields in entries:
                job = json.loads(fields["job"])
                self.jobs.add(job["id"])
                kind = "progress" if fields.get("progress_of") else str(job.get("status"))
                if kind in ("queued", "running") and job.get("message"):
                    kind = f"{kind}: {job['message'].split('(')[0].strip()}"
                self.kinds[kind] += 1
                self.last_id = entry_id
                seen += 1
        return seen

    def finish(self) -> None:
        self.stopping.set()
        self.join()
        while self.read(block_ms=None):
            pass


@dataclass
class BacklogResult:
    """One run: ours against the anchor, and what the goals say."""

    jobs: int
    media_jobs: int
    post_s: float
    total_s: float
    fleet_cpu_s: float
    fleet_breakdown: dict[str, float]
    web_cpu_s: float
    redis_cpu_s: float
    events: Counter[str]
    download_s: float  # sum over jobs of finished_at - started_at
    redis_before: int
    redis_after: int
    stream_bytes: int
    stream_len: int
    budget_mb: int
    slots: int
    redis_keys: Counter[str]
    wait_first_s: float
    wait_last_s: float
    statuses: Counter[str]
    anchor_s: float
    anchor_cpu_s: float
    load_before: str
    load_after: str

    @property
    def rate(self) -> float:
        return self.jobs / self.total_s

    @property
    def anchor_rate(self) -> float:
        return self.jobs / self.anchor_s

    def render(self) -> str:
        events = sum(self.events.values())
        events_goal = GOAL_EVENTS_BASE + GOAL_EVENTS_PER_DOWNLOAD_S * self.download_s / self.jobs
        memory_mb = (self.redis_after - self.redis_before) / 1024**2
        memory_goal = self.budget_mb + GOAL_MB_PER_10K * self.jobs / 10_000

        def verdict(met: bool) -> str:
            return "met" if met else "MISSED"

        rows = [
            ["jobs/s, first POST to last finished", f"{self.rate:.1f}", f">= {GOAL_RATE:.0f}",
             verdict(self.rate >= GOAL_RATE)],
            ["  anchor: yt-dlp, one process, sequential", f"{self.anchor_rate:.1f}", "", ""],
            ["  ours / anchor", f"{self.rate / self.anchor_rate:.2f}x", "", ""],
            ["  POSTs alone (s for all)", f"{self.post_s:.1f}", "", ""],
            ["fleet CPU ms/job (workers + children)", f"{self.fleet_cpu_s / self.jobs * 1000:.0f}",
             "", ""],
            ["  fleet CPU used (cores, over the run)", f"{self.fleet_cpu_s / self.total_s:.2f}",
             "", ""],
            ["  anchor CPU ms/job", f"{self.anchor_cpu_s / self.jobs * 1000:.0f}", "", ""],
            ["  web (uvicorn) CPU ms/job", f"{self.web_cpu_s / self.jobs * 1000:.1f}", "", ""],
            ["  Redis CPU ms/job", f"{self.redis_cpu_s / self.jobs * 1000:.1f}", "", ""],
            ["events/job", f"{events / self.jobs:.2f}", f"<= {events_goal:.2f}",
             verdict(events / self.jobs <= events_goal)],
            ["Redis used_memory after - before (MB)", f"{memory_mb:.1f}",
             f"<= {memory_goal:.0f}", verdict(memory_mb <= memory_goal)],
            ["  vf:events: entries, MEMORY USAGE (MB)",
             f"{self.stream_len}, {self.stream_bytes / 1024**2:.1f}", "", ""],
            ["downloads running at a time, mean", f"{self.download_s / self.total_s:.2f}",
             f"slots: {self.slots}", ""],
            ["wait POST -> start, first job (s)", f"{self.wait_first_s:.2f}", "", ""],
            ["wait POST -> start, last job (s)", f"{self.wait_last_s:.1f}", "", ""],
        ]  # fmt: skip
        intro = (
            f"Backlog: {self.jobs} downloads ({self.media_jobs} files, the rest 404) through "
            f"POST /api/videos/download, Procfile worker line ({WORKER_PROCESSES} processes x "
            f"{WORKER_THREADS} threads); load before {self.load_before}, after {self.load_after}"
        )
        kinds = ", ".join(f"{k} {v / self.jobs:.2f}" for k, v in self.events.most_common())
        fleet = ", ".join(
            f"{role} {s / self.jobs * 1000:.0f}"
            for role, s in sorted(self.fleet_breakdown.items())
            if s > 0
        )
        keys = ", ".join(
            f"{prefix} {size / 1024**2:.1f}" for prefix, size in self.redis_keys.most_common(6)
        )
        ends = ", ".join(f"{k} {v}" for k, v in self.statuses.most_common())
        lines = [
            intro,
            table(["figure", "value", "goal", ""], rows),
            f"events per job by kind: {kinds}",
            f"fleet CPU ms/job by process: {fleet}",
            f"Redis MEMORY USAGE by key prefix after the run (MB): {keys}",
            f"jobs ended: {ends}",
        ]
        return "\n".join(lines)


async def post_downloads(base_url: str, token: str, urls: list[str]) -> list[str]:
    """POST every URL from ``CONCURRENCY`` clients; the job ids in the URLs' order."""
    ids: list[str] = [""] * len(urls)
    remaining = iter(range(len(urls)))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=REQUEST_TIMEOUT_S,
    ) as client:

        async def one_client() -> None:
            for n in remaining:
                response = await client.post("/api/videos/download", json={"url": urls[n]})
                if response.status_code != 202:
                    raise RuntimeError(
                        f"POST {urls[n]} answered {response.status_code}: {response.text[:300]}"
                    )
                ids[n] = response.json()["id"]

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    return ids


class WorkerFleet:
    """The Procfile's worker line in a process group of its own."""

    def __init__(self, env: BenchEnv) -> None:
        self.log_path = env.root / "workers.log"
        self.environment = dict(
            os.environ,
            VIDFLEET_WORKER_PROCESSES=str(WORKER_PROCESSES),
            VIDFLEET_WORKER_THREADS=str(WORKER_THREADS),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, client: redis.Redis) -> int:
        """Start the fleet and wait until both workers fetch and have their fork
        servers; the group's leader pid."""
        self.process = start_line("worker", self.environment, self.log_path)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker line exited early:\n{self.log_tail()}")
            fetching = client.zcard("dramatiq:__heartbeats__")
            roles = [role for *_, role in fleet_cpu(self.process.pid).values()]
            if fetching >= WORKER_PROCESSES and roles.count("fork servers") >= WORKER_PROCESSES:
                return self.process.pid
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not get ready:\n{self.log_tail()}")
            time.sleep(0.2)  # polling processes we just started

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the group, wait until all of it has exited (``sh`` exits at once, the
        workers after a graceful shutdown), SIGKILL what is left at the deadline."""
        if self.process is not None:
            stop_group(self.process, timeout)


def start_line(kind: str, environment: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The Procfile's ``kind`` line, as a platform runs it, in a session of its own (so
    :func:`stop_group` stops all it starts), its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["sh", "-c", procfile_command(kind)],
            cwd=REPO,
            env=environment,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_group(leader: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the group ``leader`` leads, wait until all of it has exited, SIGKILL what
    is left at the deadline."""
    group = leader.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    leader.wait(timeout)
    deadline = time.monotonic() + timeout
    while group_alive(group):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            break
        time.sleep(0.1)  # polling a process group we stopped


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (a zombie does not count)."""
    stats = (_stat(name) for name in os.listdir("/proc") if name.isdigit())
    return any(fields and int(fields[2]) == pgid and fields[0] != "Z" for fields in stats)


def finished_count(session_factory: Any) -> int:
    from sqlalchemy import func, select

    from db.models import Job

    with session_factory() as session:
        query = select(func.count()).select_from(Job).where(Job.status.in_(FINISHED))
        return int(session.scalar(query) or 0)


def wait_until_finished(session_factory: Any, count: int, fleet: WorkerFleet) -> None:
    """Poll the jobs table until ``count`` jobs have finished (saying so on stderr at
    every tenth); fail when none finishes for ``STALL_TIMEOUT_S``."""
    done, last_change = 0, time.monotonic()
    while done < count:
        time.sleep(POLL_S)  # polling the database for the end of the run
        now = finished_count(session_factory)
        if now * 10 // count > done * 10 // count:
            print(f"  backlog: {now}/{count} finished", file=sys.stderr, flush=True)
        if now != done:
            done, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT_S:
            raise RuntimeError(
                f"stuck at {done}/{count} finished jobs for {STALL_TIMEOUT_S:.0f}s:\n"
                f"{fleet.log_tail()}"
            )


@dataclass(frozen=True)
class Outcomes:
    """How the backlog's jobs ended, and when they ran."""

    statuses: Counter[str]
    download_s: float  # summed over the jobs: finished_at - started_at
    wait_first_s: float  # started_at - created_at of the first job
    wait_last_s: float  # and of the last one
    last_finished: datetime


def check_jobs(session_factory: Any, ids: list[str], urls: list[str]) -> Outcomes:
    """Every job ended as its URL says (succeeded, or failed ``not_found``), or raise."""
    from sqlalchemy import select

    from db.models import Job

    with session_factory() as session:
        jobs = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}
    statuses: Counter[str] = Counter()
    wrong = []
    for job_id, url in zip(ids, urls, strict=True):
        job = jobs[job_id]
        error_type = (job.error or {}).get("type")
        outcome = str(job.status) if job.status == "succeeded" else f"{job.status} {error_type}"
        statuses[outcome] += 1
        expected = "succeeded" if "/media/" in url else "failed not_found"
        if outcome != expected:
            wrong.append(f"{url}: {outcome} (expected {expected}) {job.error}")
    if wrong:
        raise RuntimeError(f"{len(wrong)} jobs ended wrongly, e.g.:\n" + "\n".join(wrong[:10]))
    ordered = sorted(jobs.values(), key=lambda job: (job.created_at, job.id))

    def waited(job: Any) -> float:
        return float((job.started_at - job.created_at).total_seconds())

    return Outcomes(
        statuses=statuses,
        download_s=sum((job.finished_at - job.started_at).total_seconds() for job in ordered),
        wait_first_s=waited(ordered[0]),
        wait_last_s=waited(ordered[-1]),
        last_finished=aware(max(job.finished_at for job in ordered)),
    )


class _Silent:
    """A yt-dlp logger that drops everything (the 404s would flood the terminal)."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def run_anchor(urls: list[str]) -> tuple[float, float]:
    """The URLs through one ``yt_dlp.YoutubeDL``, one after another: (wall s, CPU s of
    this thread, which is not the media server's)."""
    import yt_dlp

    with tempfile.TemporaryDirectory(prefix="vidfleet-anchor-") as workdir:
        options = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "ignoreerrors": True,
            "logger": _Silent(),
            "outtmpl": f"{workdir}/%(id)s.%(ext)s",
        }
        started, cpu = time.monotonic(), time.thread_time()
        with yt_dlp.YoutubeDL(options) as ydl:
            for url in urls:
                ydl.download([url])
        elapsed, cpu = time.monotonic() - started, time.thread_time() - cpu
        files = len(list(Path(workdir).glob("*.mp4")))
    expected = sum("/media/" in url for url in urls)
    if files != expected:
        raise RuntimeError(f"the anchor downloaded {files} files, expected {expected}")
    return elapsed, cpu


def redis_memory_by_prefix(client: redis.Redis) -> Counter[str]:
    """``MEMORY USAGE`` of every key, summed by the key's name with any job id in it as
    ``*`` (so the snapshots of all jobs add up to one figure)."""
    usage: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        usage[JOB_ID.sub("*", key)] += int(client.memory_usage(key) or 0)
    return usage


def aware(moment: datetime) -> datetime:
    """``moment`` in UTC (SQLite gives the stored UTC times back without a zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_backlog(*, quick: bool) -> BacklogResult:
    """Queue the backlog against a loopback server, let two workers drain it, measure;
    then the anchor over the same URLs."""
    count = 1_000 if quick else 10_000
    with bench_env() as env:
        from db.engine import make_engine, session_factory
        from db.settings import load_settings

        settings = load_settings()
        MediaHandler.video = make_tiny_video(env.root / "tiny.mp4").read_bytes()
        media = ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
        media.daemon_threads = True
        threading.Thread(target=media.serve_forever, name="media-server", daemon=True).start()
        urls = backlog_urls(media.server_address[1], count)
        client = redis.Redis.from_url(env.redis_url, decode_responses=True)
        engine = make_engine(env.database_url)
        web, fleet = UvicornProcess(env), WorkerFleet(env)
        try:
            web.start()
            root = fleet.start(client)
            newest = cast(list[Entry], client.xrevrange("vf:events", count=1))
            counter = EventCounter(client, newest[0][0] if newest else "0-0")
            counter.start()
            load_before = load_average()
            memory_before = int(client.info("memory")["used_memory"])
            cpu_before = fleet_cpu(root)
            web_before, redis_before = process_cpu(web.pid) or 0.0, redis_cpu(client)
            first_post = datetime.now(UTC)
            started = time.monotonic()
            ids = asyncio.run(post_downloads(web.url, env.admin_token, urls))
            post_s = time.monotonic() - started
            wait_until_finished(session_factory(engine), count, fleet)
            cpu_after = fleet_cpu(root)
            web_cpu = (process_cpu(web.pid) or 0.0) - web_before
            used_redis_cpu = redis_cpu(client) - redis_before
            counter.finish()
            memory_after = int(client.info("memory")["used_memory"])
            stream_bytes = int(client.memory_usage("vf:events") or 0)
            stream_len = int(client.xlen("vf:events"))
            by_prefix = redis_memory_by_prefix(client)
            load_after = load_average()
        finally:
            fleet.stop()
            web.stop()
        outcomes = check_jobs(session_factory(engine), ids, urls)
        engine.dispose()
        breakdown: defaultdict[str, float] = defaultdict(float)
        for pid, (own, reaped, role) in cpu_after.items():
            own_before, reaped_before, _ = cpu_before.get(pid, (0.0, 0.0, role))
            breakdown[role] += own - own_before
            breakdown[f"{role}: reaped children"] += reaped - reaped_before
        anchor_s, anchor_cpu = run_anchor(urls)
        media.shutdown()
        media.server_close()
    return BacklogResult(
        jobs=count,
        media_jobs=sum("/media/" in url for url in urls),
        post_s=post_s,
        total_s=(outcomes.last_finished - first_post).total_seconds(),
        fleet_cpu_s=sum(breakdown.values()),
        fleet_breakdown=dict(breakdown),
        web_cpu_s=web_cpu,
        redis_cpu_s=used_redis_cpu,
        events=counter.kinds,
        download_s=outcomes.download_s,
        redis_before=memory_before,
        redis_after=memory_after,
        stream_bytes=stream_bytes,
        stream_len=stream_len,
        budget_mb=settings.events_max_mb,
        slots=settings.max_concurrent_downloads,
        redis_keys=by_prefix,
        wait_first_s=outcomes.wait_first_s,
        wait_last_s=outcomes.wait_last_s,
        statuses=outcomes.statuses,
        anchor_s=anchor_s,
        anchor_cpu_s=anchor_cpu,
        load_before=load_before,
        load_after=load_after,
    )
