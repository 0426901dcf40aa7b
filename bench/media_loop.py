"""Benchmark 10, part "loop" (issue 9 item 7): how fast does the web's event loop answer
while 8 on-demand thumbnails are being made, in vidfleet's design and in the other one
the issue allows?

A client in a process of its own sends ``GET /healthz`` at a steady pace (open loop: each
request leaves at its time, whatever the earlier ones did) and keeps every latency.
The conditions take turns, in a rotated order each round:

- **vidfleet idle** (the anchor): uvicorn running ``web.app:create_app`` in a child
  process (§1's ``UvicornProcess``) and the Procfile's worker line (§9's
  ``WorkerFleet``: 2 processes x 4 threads), nothing to do;
- **vidfleet, 8 thumbnails on the workers**: 8 library videos (links to a generated 60 s
  1080p clip) are kept in analysis: each has an ``analyze`` job queued as after a
  download (:func:`db.job_service.submit`, as :func:`actors.analyze.analyze_later`
  does), ``GET /thumbnails/{id}/320.webp`` answers 404 naming that job, the workers make
  the thumbnails (:func:`media.analysis.analyze` in a forked child), the same GET then
  answers 200; at once the video's thumbnails are forgotten and a new job queued;
- **thread pool idle** and **thread pool, 8 thumbnails on the web**: a throwaway
  Starlette app (:func:`create_pool_app`, here in the bench, not in ``web/``) under the
  same uvicorn, whose ``POST /thumbnails/{n}`` runs the same ``analyze`` through
  ``run_in_threadpool`` in a bounded thread pool (anyio's default limiter, set to N
  threads); 8 clients keep 8 requests in flight.

Figures: p50/p99 of ``/healthz`` per condition (the median of the trials' percentiles,
and the p99 of all samples), as ratios to the idle vidfleet, the thumbnails made per
second during the measurement, the measured server's CPU and the load average.
``python -m bench.media_loop URL RATE SECONDS`` is the pacing client (one JSON line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from bench.env import BenchEnv

#: Requests per second of the pacing client, and seconds per trial.
RATE = 50
TRIAL_S = 10.0
#: Trials per condition (one in a quick run).
ROUNDS = 5
QUICK_TRIAL_S = 3.0
#: Thumbnails being made at once.
IN_FLIGHT = 8
#: Seconds the work runs before the client starts, so that all of it is under way.
RAMP_S = 1.5
POLL_S = 0.05
JOB_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0

CLIPS_VARIABLE = "VIDFLEET_BENCH_POOL_CLIPS"
OUT_VARIABLE = "VIDFLEET_BENCH_POOL_OUT"
THREADS_VARIABLE = "VIDFLEET_BENCH_POOL_THREADS"


# -- the pacing client (a process of its own) ----------------------------------------


async def paced_healthz(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """``GET /healthz`` ``rate`` times a second for ``seconds``: each request's latency
    and how late the client sent it (s), and the window (``time.monotonic``)."""
    import httpx

    count = round(rate * seconds)
    # No cap on connections: a request never waits in the client for an earlier one.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        (await client.get("/healthz")).raise_for_status()  # the connection, not counted
        start = time.perf_counter() + 0.05
        started = time.monotonic() + 0.05

        async def one(n: int) -> None:
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            response = await client.get("/healthz")
            done = time.perf_counter()
            if response.status_code != 200:
                raise RuntimeError(f"/healthz answered {response.status_code}")
            samples.append((done - sent, sent - due))

        await asyncio.gather(*(one(n) for n in range(count)))
    return {"started": started, "ended": time.monotonic(), "samples": samples}


def main(argv: list[str]) -> None:
    """The pacing client, in real-time scheduling where allowed (root): it then gets a
    CPU as soon as it wakes, so its own waits for one, on a machine that is busy on
    purpose, do not count as the server's latency (it is light: real time throttles
    nothing here)."""
    url, rate, seconds = argv[0], float(argv[1]), float(argv[2])
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        realtime = True
    except PermissionError:
        realtime = False
    found = asyncio.run(paced_healthz(url, rate, seconds))
    print(json.dumps({**found, "realtime": realtime}))


# -- the throwaway app: thumbnails made on the web process ---------------------------


def create_pool_app() -> Starlette:
    """``GET /healthz``; ``POST /thumbnails/{n}``: :func:`media.analysis.analyze` of
    clip ``n`` (modulo their count) into ``<out>/<n>/``, in anyio's default thread
    pool bounded to ``$VIDFLEET_BENCH_POOL_THREADS`` threads."""
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from media.analysis import analyze
    from media.ffmpeg import ffmpeg_path

    clips = os.environ[CLIPS_VARIABLE].split(os.pathsep)
    out = Path(os.environ[OUT_VARIABLE])
    threads = int(os.environ[THREADS_VARIABLE])
    ffmpeg = ffmpeg_path()
    probes: dict[str, dict[str, Any]] = {}  # reused, as the workers reuse a stored probe

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def thumbnails(request: Request) -> JSONResponse:
        n = request.path_params["n"]
        clip = clips[n % len(clips)]
        found = await run_in_threadpool(
            analyze, clip, str(out / str(n)), ffmpeg, previous_probe=probes.get(clip)
        )
        probes[clip] = found["probe"]
        return JSONResponse({"widths": found["thumbnails"]["widths"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/thumbnails/{n:int}", thumbnails, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


# -- the bench -----------------------------------------------------------------------


@dataclass
class Trial:
    latencies: list[float]
    lateness: list[float]
    made: int  # thumbnails finished inside the client's window
    window_s: float
    server_cpu_s: float  # the measured server's CPU over the whole trial
    busy_s: float  # the whole trial: ramp, window, drain
    load: float  # 1-minute load average at the end
    realtime: bool  # the client ran SCHED_FIFO
    others_cores: float  # CPU the rest of the machine used over the trial, in cores
    loop_wait_s: float  # the server's event loop thread runnable but not running


@dataclass
class Condition:
    """One way the machine is kept busy (or not) while a server's /healthz is paced."""

    name: str
    server: str  # "vidfleet" or "pool"
    work: Callable[[asyncio.Event, list[float]], Awaitable[None]] | None
    trials: list[Trial] = field(default_factory=list)


class LibraryThumbnails:
    """Keeps ``IN_FLIGHT`` library videos' analyses queued or running on the workers, as
    after their downloads, and checks the web's answer for their thumbnails."""

    def __init__(self, env: BenchEnv, web_url: str, video_ids: list[int]) -> None:
        import actors  # noqa: F401  (declares the actors: the courier sends by kind)
        from actors import stores
        from db.engine import make_engine, session_factory

        self.env = env
        self.web_url = web_url
        self.video_ids = video_ids
        self.engine = make_engine(env.database_url)
        self.sessions = session_factory(self.engine)
        self.courier = stores.courier()

    def queue(self, video_id: int) -> str:
        """Forget the video's thumbnails and queue its analysis; the job's id."""
        from sqlalchemy import update

        from db import job_service
        from db.models import JobKind, Video
        from db.queues import Queue
        from db.settings import get_settings

        with self.sessions.begin() as session:
            session.execute(update(Video).where(Video.id == video_id).values(thumbnail_widths=None))
        with self.engine.connect() as connection:
            submission, outbox = job_service.submit(
                connection,
                kind=JobKind.analyze,
                queue=Queue.media,
                params={"video_id": video_id},
                owner="system",
                max_attempts=get_settings().max_attempts,
                max_active=sys.maxsize,
                max_active_of_owner=sys.maxsize,
            )
        self.courier.deliver(outbox)
        assert submission.job is not None, "an analysis of this video is still active"
        return str(submission.job["id"])

    def statuses(self, job_ids: list[str]) -> dict[str, tuple[str, Any]]:
        from sqlalchemy import select

        from db.models import Job

        with self.sessions() as session:
            rows = session.execute(select(Job.id, Job.status, Job.error).where(Job.id.in_(job_ids)))
            return {row.id: (str(row.status), row.error) for row in rows}

    async def run(self, stop: asyncio.Event, made: list[float]) -> None:
        """Until ``stop``: whenever a video's analysis ends, check its thumbnail is served
        (its time into ``made``) and queue the next; then wait for those in flight."""
        import httpx

        headers = {"Authorization": f"Bearer {self.env.admin_token}"}
        async with httpx.AsyncClient(
            base_url=self.web_url, headers=headers, timeout=REQUEST_TIMEOUT_S
        ) as client:

            async def start(video_id: int) -> tuple[str, float]:
                job_id = await asyncio.to_thread(self.queue, video_id)
                answer = await client.get(f"/thumbnails/{video_id}/320.webp")
                error = answer.json().get("error", {}) if answer.status_code == 404 else {}
                if error.get("job_id") != job_id:
                    raise RuntimeError(
                        f"/thumbnails/{video_id} before its analysis answered "
                        f"{answer.status_code} {answer.text[:200]}, not 404 naming {job_id}"
                    )
                return job_id, time.monotonic()

            first = await asyncio.gather(*(start(video) for video in self.video_ids))
            jobs = dict(zip(self.video_ids, first, strict=True))
            while jobs:
                await asyncio.sleep(POLL_S)  # polling the jobs table, as a client would
                found = await asyncio.to_thread(self.statuses, [job for job, _ in jobs.values()])
                for video_id, (job_id, queued) in list(jobs.items()):
                    state, error = found[job_id]
                    if state in ("queued", "running"):
                        if time.monotonic() - queued > JOB_TIMEOUT_S:
                            raise RuntimeError(f"analysis {job_id} still {state}")
                        continue
                    if state != "succeeded":
                        raise RuntimeError(f"analysis {job_id} ended {state}: {error}")
                    served = await client.get(f"/thumbnails/{video_id}/320.webp")
                    if served.status_code != 200:
                        raise RuntimeError(f"thumbnail {video_id} answered {served.status_code}")
                    made.append(time.monotonic())
                    del jobs[video_id]
                    if not stop.is_set():
                        jobs[video_id] = await start(video_id)

    def close(self) -> None:
        self.engine.dispose()


async def pool_thumbnails(url: str, stop: asyncio.Event, made: list[float]) -> None:
    """``IN_FLIGHT`` clients asking the throwaway app for thumbnails until ``stop``."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:

        async def one_client(n: int) -> None:
            while not stop.is_set():
                response = await client.post(f"/thumbnails/{n}")
                if response.status_code != 200:
                    raise RuntimeError(f"the pool app answered {response.status_code}")
                made.append(time.monotonic())

        await asyncio.gather(*(one_client(n) for n in range(IN_FLIGHT)))


async def run_trial(condition: Condition, url: str, pid: int, seconds: float) -> Trial:
    from bench.http_latency import process_cpu
    from bench.media_cores import machine_cpu, tree_cpu

    stop, made = asyncio.Event(), list[float]()
    cpu, busy = process_cpu(pid) or 0.0, time.monotonic()
    ours, machine = tree_cpu(), machine_cpu()
    work = asyncio.ensure_future(condition.work(stop, made)) if condition.work else None
    try:
        if work is not None:
            await asyncio.sleep(RAMP_S)  # the work gets under way before the clock
        waited = run_queue_wait(pid)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.media_loop", url, str(RATE), str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await client.communicate()
        waited = run_queue_wait(pid) - waited
        if client.returncode != 0:
            raise RuntimeError(f"the pacing client exited with {client.returncode}")
    finally:
        stop.set()
        if work is not None:
            await work
    busy_s = time.monotonic() - busy
    others = machine_cpu() - machine - (tree_cpu() - ours)
    found = json.loads(output)
    samples = found["samples"]
    return Trial(
        latencies=[latency for latency, _ in samples],
        lateness=[late for _, late in samples],
        made=sum(found["started"] <= moment <= found["ended"] for moment in made),
        window_s=found["ended"] - found["started"],
        server_cpu_s=(process_cpu(pid) or 0.0) - cpu,
        busy_s=busy_s,
        load=os.getloadavg()[0],
        realtime=found["realtime"],
        others_cores=max(0.0, others) / busy_s,
        loop_wait_s=waited,
    )


def run_queue_wait(pid: int) -> float:
    """Seconds the main thread of process ``pid`` (a uvicorn's event loop) has spent
    runnable but waiting for a CPU (``schedstat``; 0 where there is none). A thread
    waiting for the GIL sleeps: that is not in here."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except OSError:
        return 0.0


def library_videos(clip: Path, count: int) -> list[int]:
    """``count`` library rows, each a link to ``clip`` under the media root."""
    from db.engine import make_engine, session_factory
    from db.models import Video
    from db.settings import load_settings

    root = load_settings().media_root
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(os.environ["DATABASE_URL"])
    ids = []
    try:
        with session_factory(engine).begin() as session:
            for n in range(count):
                relative = f"loop-{n}.mp4"
                os.link(clip, root / relative)
                video = Video(
                    title=f"Loop {n}", source_url=f"https://example.com/loop/{n}",
                    extractor="bench", extractor_id=f"loop-{n}", path=relative,
                    size=clip.stat().st_size,
                )  # fmt: skip
                session.add(video)
                session.flush()
                ids.append(int(video.id))
    finally:
        engine.dispose()
    return ids


def render(conditions: list[Condition], threads: int, seconds: float, rounds: int) -> str:
    from bench.report import median, percentile, table

    def p(trial: Trial, q: float) -> float:
        return percentile(trial.latencies, q) * 1000

    anchor = conditions[0]
    anchor_p50 = median([p(t, 50) for t in anchor.trials])
    anchor_p99 = median([p(t, 99) for t in anchor.trials])
    rows = []
    for condition in conditions:
        trials = condition.trials
        p50, p99 = median([p(t, 50) for t in trials]), median([p(t, 99) for t in trials])
        every = [latency for t in trials for latency in t.latencies]
        late = [x for t in trials for x in t.lateness]
        made = sum(t.made for t in trials) / sum(t.window_s for t in trials)
        cpu = sum(t.server_cpu_s for t in trials) / sum(t.busy_s for t in trials)
        rows.append(
            [
                condition.name,
                f"{p50:.2f}",
                f"{p99:.1f}",
                f"{p50 / anchor_p50:.2f}",
                f"{p99 / anchor_p99:.1f}",
                f"{percentile(every, 99) * 1000:.1f}",
                f"{max(every) * 1000:.0f}",
                f"{percentile(late, 99) * 1000:.1f}",
                f"{made:.2f}" if condition.work else "-",
                f"{cpu * 100:.0f}",
                f"{sum(t.loop_wait_s for t in trials) / len(every) * 1000:.2f}",
                f"{median([t.others_cores for t in trials]):.2f}",
                " ".join(f"{t.load:.1f}" for t in trials),
            ]
        )
    header = [
        "condition", "p50 ms", "p99 ms", "p50 x idle", "p99 x idle", "p99 all ms", "max ms",
        "client late p99 ms", "thumbs/s", "server CPU %", "loop CPU wait ms/req",
        "others' cores", "load (1 min) per trial",
    ]  # fmt: skip
    trials = [t for condition in conditions for t in condition.trials]
    realtime = "SCHED_FIFO" if all(t.realtime for t in trials) else "not real time (no root)"
    return (
        f"Event loop under thumbnail work (issue 9 item 7): GET /healthz at {RATE}/s for "
        f"{seconds:.0f} s per trial, {rounds} trials per condition in turns (p50/p99: "
        f"median of the trials'), {IN_FLIGHT} thumbnails in flight (analyze of a 60 s "
        f"1080p clip); thread pool: {threads} threads; {os.cpu_count()} CPUs; client "
        f"{realtime}; sched_autogroup {autogroup()}\n" + table(header, rows)
    )


def autogroup() -> str:
    """Whether the kernel shares CPU time by session first (then each media child, a
    session of its own, weighs as much as the whole web process)."""
    try:
        return (
            "on"
            if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
            else "off"
        )
    except OSError:
        return "unknown"


def run_loop(env: BenchEnv, clip: Path, *, quick: bool) -> str:
    """Item 7's table: every condition in turns, ``rounds`` trials each."""
    import redis

    from bench.backlog import WorkerFleet, load_average
    from bench.child import ChildServer
    from bench.http_latency import UvicornProcess

    threads = 4
    rounds, seconds = (1, QUICK_TRIAL_S) if quick else (ROUNDS, TRIAL_S)

    class WebServer(UvicornProcess):
        new_session = True

    class PoolServer(ChildServer):
        name = "thread pool app"
        new_session = True

        def argv(self) -> list[str]:
            return [
                sys.executable, "-m", "uvicorn", "--factory", "bench.media_loop:create_pool_app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip

        def environment(self) -> dict[str, str]:
            return dict(
                os.environ,
                **{
                    CLIPS_VARIABLE: str(clip),
                    OUT_VARIABLE: str(env.root / "pool-thumbnails"),
                    THREADS_VARIABLE: str(threads),
                },
            )

    video_ids = library_videos(clip, IN_FLIGHT)
    client = redis.Redis.from_url(env.redis_url, decode_responses=True)
    web, fleet, pool = WebServer(env), WorkerFleet(env), PoolServer(env, "pool-app")
    load_before, started = load_average(), time.monotonic()
    library: LibraryThumbnails | None = None
    try:
        web.start()
        fleet.start(client)
        pool.start()
        library = LibraryThumbnails(env, web.url, video_ids)
        conditions = [
            Condition("vidfleet idle (anchor)", "vidfleet", None),
            Condition(f"vidfleet, {IN_FLIGHT} thumbnails on the workers", "vidfleet", library.run),
            Condition("thread pool app idle", "pool", None),
            # A control: the same machine load, measured on the app without a hub,
            # auth or database.
            Condition(
                f"thread pool app idle, {IN_FLIGHT} thumbnails on the workers",
                "pool",
                library.run,
            ),
            Condition(
                f"thread pool app, {IN_FLIGHT} thumbnails in its pool",
                "pool",
                lambda stop, made: pool_thumbnails(pool.url, stop, made),
            ),
        ]
        servers = {"vidfleet": (web.url, web.pid), "pool": (pool.url, pool.pid)}

        async def trials() -> None:
            for round_ in range(rounds):
                shift = round_ % len(conditions)
                for condition in conditions[shift:] + conditions[:shift]:
                    url, pid = servers[condition.server]
                    condition.trials.append(await run_trial(condition, url, pid, seconds))

        asyncio.run(trials())
    finally:
        if library is not None:
            library.close()
        pool.stop()
        fleet.stop()
        web.stop()
    return (
        render(conditions, threads, seconds, rounds)
        + f"\nload before {load_before}, after {load_average()}; "
        f"{time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
