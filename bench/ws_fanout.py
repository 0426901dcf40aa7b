"""Benchmark 4, WebSocket fan-out: 1,000 clients in one Node.js process, or split over N
(``--ws-clients``; their latency histograms are merged) (``bench/ws_client/client.js``:
npm ``ws`` for vidfleet, ``socket.io-client`` for the anchor, both offering
permessage-deflate as a browser does) receive job events
published at a fixed offered rate (20, 100, 300 events/s), from

- **vidfleet**: ``uvicorn --factory web.app:create_app`` in a child process (one
  process, and a ``WEB_CONCURRENCY=2`` row with two workers, each with its own stream
  reader), each socket authenticated with the admin token and subscribed to ``["*"]``.
  The bench process publishes into ``vf:events`` with the reporter's script
  (``db.live.PUBLISH_SCRIPT``), one call per event;
- **the anchor**: a Flask-SocketIO server on gevent (``bench/socketio_anchor.py``) in
  a child process that ``socketio.emit``s the same events at the same rate.

Every event's job carries its creation time (``time.time()`` in ms) and a sequence
number in ``job.params`` (``t``, ``seq``); the client records arrival minus creation
for every event on every socket. Every 20th event is a state change (``params.state``)
and the rest are progress reports of 40 jobs, marked as the reporter marks them, so a
vidfleet socket that falls behind gets conflated progress: ``deliv`` is the share of
all events delivered, ``state`` the share of state changes (which are never skipped).
Per trial: delivered events/s over all sockets, p50/p99 latency, sockets open at the
end, 1013 closes, and the CPU of the server (all its processes) and of the client,
from ``/proc/<pid>/stat``, as % of one core.
Each trial gets a fresh server process and 1,000 fresh connections; at each rate the
servers take turns (the anchor, vidfleet, vidfleet ×2, then, at 100 and 300 events/s,
the anchor and vidfleet again with a client that offers no permessage-deflate: the
client's inflating, not the server, is what limits the compressed rows; see
bench/README.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.child import ChildServer
from bench.env import BenchEnv
from bench.report import table

CLIENT_DIR = Path(__file__).resolve().parent / "ws_client"
CLIENTS = 1_000
RATES = (20, 100, 300)
CONNECT_TIMEOUT_S = 120.0
PARALLEL = 50  # handshakes in flight at once, over all client processes
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WsPlan:
    seconds: float  # publishing time per trial
    drain: float  # waiting for the last events after publishing stops
    rates: tuple[int, ...] = RATES
    plain_rates: tuple[int, ...] = (100, 300)  # the rows without permessage-deflate
    clients: int = CLIENTS


FULL = WsPlan(seconds=8.0, drain=2.0)
QUICK = WsPlan(seconds=3.0, drain=1.0, plain_rates=())
# ws inflates on libuv's thread pool and by default lets 10 zlib calls run at once in the
# whole process: 1,000 sockets queue behind each other there, which no browser (one
# socket, its own inflater) does. Up to 1,000 at once (on libuv's default 4 threads)
# delivered more to both servers here.
CLIENT_ZLIB: dict[str, Any] = {"zlibConcurrency": 1000}

# A pool of job ids, so events look like progress of a few dozen running downloads.
JOB_IDS = [str(uuid.UUID(int=i + 1)) for i in range(40)]
STATE_EVERY = 20  # every 20th event is a state change (a new stage), the rest progress


def is_state_change(seq: int) -> bool:
    return seq % STATE_EVERY == STATE_EVERY - 1


def state_changes(published: int) -> int:
    return published // STATE_EVERY


def make_job(seq: int, created_ms: float, trial: str) -> dict[str, Any]:
    """A running download's public form (``db.jobs.job_to_dict``), about 700 bytes of
    JSON, with the bench's creation time, sequence number and trial in ``params``."""
    progress = (seq % 100) / 100
    return {
        "id": JOB_IDS[seq % len(JOB_IDS)],
        "kind": "download",
        "status": "running",
        "queue": "interactive",
        "params": {
            "url": f"https://videos.example.com/watch?v=bench{seq % len(JOB_IDS):04d}",
            "quality": "best",
            "t": created_ms,
            "seq": seq,
            "trial": trial,
            "state": is_state_change(seq),
        },
        "result": None,
        "error": None,
        "progress": progress,
        "stage": f"stage-{seq}" if is_state_change(seq) else "downloading",
        "message": f"{progress * 48.2:.1f} MiB of 48.2 MiB at 3.1 MiB/s, ETA 00:12",
        "attempts": 1,
        "max_attempts": 3,
        "parent_id": None,
        "retry_of": None,
        "created_at": "2026-12-01T20:00:00.123456Z",
        "started_at": "2026-12-01T20:00:01.234567Z",
        "finished_at": None,
        "updated_at": "2026-12-01T20:00:05.345678Z",
    }


def make_event(seq: int, created_ms: float, trial: str) -> dict[str, Any]:
    """The WebSocket event as vidfleet sends it (``db.live.decode_event``)."""
    job = make_job(seq, created_ms, trial)
    return {"type": "job", "id": f"{int(created_ms)}-{seq}", "job": job}


# -- processes and their CPU


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        return found
    return found + [g for c in found for g in _children(c)]


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU of ``pid`` (and its descendants, now alive) in seconds."""
    total = 0.0
    for p in [pid, *(_children(pid) if tree else [])]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (busy: everything but idle and
    iowait, so softirq work of loopback TCP no process is charged for counts too)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    total = float(sum(values[:8]))  # guest time is already in user
    return total - values[3] - values[4], total


def run_queue_wait_seconds(pid: int) -> float:
    """How long every thread of ``pid`` and its descendants (now alive) was ready to run
    but waited for a CPU, in seconds (``/proc/<pid>/task/<tid>/schedstat``): what
    sharing the cores with the other processes cost it."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


class SocketQueues(threading.Thread):
    """Samples ``/proc/net/tcp`` once a second while a trial publishes: the bytes the
    client has not read yet (receive queues of the sockets connected to ``port``) and the
    bytes the server's sockets have not got acknowledged (their send queues), summed over
    all sockets; ``means()`` averages the samples. What waits there is latency no
    server-side figure shows."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.samples.append(self.sample())

    def sample(self) -> tuple[int, int]:
        client_unread = server_unacked = 0
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] != "01":  # ESTABLISHED
                    continue
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                tx_queue, rx_queue = (int(q, 16) for q in fields[4].split(":"))
                if remote_port == self.port:
                    client_unread += rx_queue
                elif local_port == self.port:
                    server_unacked += tx_queue
        return client_unread, server_unacked

    def means(self) -> tuple[float, float]:
        """Mean (client unread, server unacknowledged) bytes over the samples."""
        self.done.set()
        self.join()
        if not self.samples:
            return 0.0, 0.0
        n = len(self.samples)
        return sum(c for c, _ in self.samples) / n, sum(s for _, s in self.samples) / n


class ServerProfile:
    """``py-spy record`` of a server's processes (``--subprocesses``: a
    ``WEB_CONCURRENCY=2`` supervisor's workers too) while a trial publishes, written as
    collapsed stacks (``--format raw``) to ``<directory>/<label>.txt``; idle threads
    are left out, so the samples are where its CPU went. ``py-spy`` comes from PyPI
    (``pip install py-spy``); it samples from outside the server, at ``RATE_HZ``."""

    RATE_HZ = 100

    def __init__(self, directory: Path, label: str, pid: int, seconds: float) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            raise RuntimeError("--ws-profile needs py-spy: pip install py-spy")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{label}.txt"
        self.process = subprocess.Popen(
            [
                py_spy, "record", "--pid", str(pid), "--subprocesses",
                "--rate", str(self.RATE_HZ), "--duration", str(math.ceil(seconds)),
                "--format", "raw", "--output", str(self.path), "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def wait(self) -> None:
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class VidfleetServer(ChildServer):
    """The app under uvicorn (uvloop, httptools, the ``websockets`` implementation) as the
    Procfile runs it: permessage-deflate only where ``VIDFLEET_WS_COMPRESSION`` turns it
    on (a client's offer is declined by default), ``WEB_CONCURRENCY`` workers."""

    mode = "ws"

    def __init__(self, env: BenchEnv, workers: int) -> None:
        super().__init__(env, f"uvicorn-ws-{workers}")
        self.workers = workers
        self.name = "vidfleet" if workers == 1 else f"vidfleet WEB_CONCURRENCY={workers}"

    def argv(self) -> list[str]:
        # Compression as deployed: the Procfile's VIDFLEET_WS_COMPRESSION, off unless set.
        compression = os.environ.get("VIDFLEET_WS_COMPRESSION", "false")
        return [
            sys.executable, "-m", "uvicorn", "--factory", "web.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--ws", "web.ws_protocol:WebSocketProtocol", "--ws-max-size", "65536",
            "--ws-per-message-deflate", compression,
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WEB_CONCURRENCY"] = str(self.workers)  # uvicorn's --workers default
        return env

    def client_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def publish(self, rate: float, seconds: float, trial: str) -> int:
        """XADD ``rate`` events a second for ``seconds`` (the reporter's script, one call
        per event, as a job's progress reports do; progress marked as the reporter marks
        it, so a socket that falls behind may skip it); how many went out."""
        from db import live

        client = live.sync_client(self.env.redis_url)
        try:
            sha = str(client.script_load(live.PUBLISH_SCRIPT))
            total = int(rate * seconds)
            started = time.monotonic()
            for seq in range(total):
                delay = started + seq / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the offered rate
                job = make_job(seq, time.time() * 1000, trial)
                keys, args = live.publish_arguments(job, progress=not is_state_change(seq))
                client.evalsha(sha, len(keys), *keys, *args)
            return total
        finally:
            client.close()


class AnchorServer(ChildServer):
    mode = "sio"
    name = "Flask-SocketIO gevent (anchor)"

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env, "socketio-anchor")

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bench.socketio_anchor", str(self.port)]

    def client_url(self) -> str:
        return self.url

    def publish(self, rate: float, seconds: float, trial: str) -> int:
        import httpx

        response = httpx.post(
            f"{self.url}/emit",
            params={"rate": rate, "seconds": seconds, "trial": trial},
            timeout=seconds + 60,
        )
        response.raise_for_status()
        return int(response.json()["emitted"])


class NodeClient:
    """``node bench/ws_client/client.js``: N sockets in one process, driven over stdin."""

    def __init__(
        self, mode: str, url: str, clients: int, token: str | None, **options: Any
    ) -> None:
        config = {"mode": mode, "url": url, "clients": clients, "token": token, **options}
        env = dict(os.environ)
        if "threadpool" in options:
            env["UV_THREADPOOL_SIZE"] = str(options["threadpool"])
        self.process = subprocess.Popen(
            [node_binary(), str(CLIENT_DIR / "client.js"), json.dumps(config)],
            cwd=CLIENT_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def read(self, key: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the Node client exited ({self.process.poll()})")
            message = json.loads(line)
            if "fatal" in message:
                raise RuntimeError(f"the Node client failed: {message['fatal']}")
            if key in message:
                return dict(message[key]) if isinstance(message[key], dict) else message
        raise RuntimeError(f"the Node client sent no {key!r} in {timeout:.0f} s")

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class ClientFleet:
    """The bench's sockets split as evenly as can be over ``processes`` Node.js client
    processes, driven together: a command goes to all of them before any answer is read,
    and their stats are merged (counters summed, latency histograms added, so p50/p99 are
    over every event any of them received, not an average of theirs).

    Each process opens its share with ``PARALLEL / processes`` handshakes in flight, so
    the server sees about as many connection attempts at once whatever the split."""

    def __init__(
        self,
        mode: str,
        url: str,
        clients: int,
        token: str | None,
        processes: int,
        **options: Any,
    ) -> None:
        shares = [clients // processes + (i < clients % processes) for i in range(processes)]
        parallel = max(1, PARALLEL // processes)
        self.members: list[NodeClient] = []
        try:
            for share in shares:
                self.members.append(
                    NodeClient(mode, url, share, token, parallel=parallel, **options)
                )
            readies = [m.read("ready", CONNECT_TIMEOUT_S) for m in self.members]
        except BaseException:
            self.close()
            raise
        self.ready = merge_counts(readies)
        self.ready["connect_ms"] = max(r["connect_ms"] for r in readies)

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members]

    def command(self, command: str, reply: str) -> list[dict[str, Any]]:
        for member in self.members:
            member.send(command)
        return [member.read(reply, 60) for member in self.members]

    def stats(self) -> dict[str, Any]:
        """``stop`` on every process: the merged counters, histogram and percentiles, and
        each process's event-loop utilization."""
        each = self.command("stop", "stats")
        merged = merge_counts(each, skip=("histogram", "loop_utilization", "bucket_ms"))
        histogram: Counter[int] = Counter()
        for stats in each:
            histogram.update({int(b): int(n) for b, n in stats["histogram"]})
        bucket_ms = float(each[0]["bucket_ms"])
        merged["p50_ms"] = percentile(histogram, 50, bucket_ms)
        merged["p99_ms"] = percentile(histogram, 99, bucket_ms)
        merged["max_ms"] = max(float(s["max_ms"]) for s in each)
        merged["state_max_ms"] = max(float(s["state_max_ms"]) for s in each)
        merged["loop_utilization"] = [float(s["loop_utilization"]) for s in each]
        return merged

    def close(self) -> None:
        for member in self.members:
            member.close()


def merge_counts(reports: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Numbers summed and ``{name: count}`` tables added up, key by key."""
    merged: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key in skip:
                continue
            if isinstance(value, dict):
                table = merged.setdefault(key, {})
                for name, count in value.items():
                    table[name] = table.get(name, 0) + count
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
    return merged


def percentile(histogram: Counter[int], p: float, bucket_ms: float) -> float | None:
    """The upper edge of the bucket that holds the ``p``-th percentile event."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round((bucket + 1) * bucket_ms, 1)
    return None


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the WebSocket bench needs Node.js (node) on PATH")
    return node


def ensure_client_deps() -> None:
    """``npm ci`` in bench/ws_client once (the lock file pins ws and socket.io-client)."""
    if (CLIENT_DIR / "node_modules" / "ws").is_dir() and (
        CLIENT_DIR / "node_modules" / "socket.io-client"
    ).is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the WebSocket bench needs npm to install its Node client")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT_DIR, check=True
    )


# -- trials and the table


@dataclass
class Trial:
    server: str
    rate: int
    seconds: float
    published: int
    clients: int
    ready: dict[str, Any]
    stats: dict[str, Any]
    server_cpu: float  # % of one core
    client_cpu: float  # all client processes
    client_processes: int = 1
    client_cpu_max: float = 0.0  # the busiest client process
    anchor: bool = False
    deflate: bool = True
    machine_cpu: float = 0.0  # % of all cores busy, by anything
    server_wait: float = 0.0  # % of the wall time the server's threads waited for a CPU
    client_wait: float = 0.0  # the same, summed over the client processes
    client_unread: float = 0.0  # mean bytes in the client's receive queues
    server_unacked: float = 0.0  # mean bytes in the server's send queues

    @property
    def loop_max(self) -> float:
        """The busiest client process's event-loop utilization (1 = never idle)."""
        return max(self.stats.get("loop_utilization") or [0.0])

    @property
    def delivered_per_s(self) -> float:
        return float(self.stats["events"]) / self.seconds

    @property
    def delivered_share(self) -> float:
        expected = self.published * int(self.ready["open"])
        return float(self.stats["events"]) / expected if expected else 0.0

    @property
    def state_share(self) -> float:
        expected = state_changes(self.published) * int(self.ready["open"])
        return float(self.stats.get("state_events", 0)) / expected if expected else 0.0

    @property
    def closes_1013(self) -> int:
        return int(self.stats["closes"].get("1013", 0))


@dataclass
class WsResult:
    plan: WsPlan
    trials: list[Trial] = field(default_factory=list)
    versions: str = ""

    def render(self) -> str:
        anchors = {(t.rate, t.deflate, t.client_processes): t for t in self.trials if t.anchor}
        rows = []
        for t in self.trials:
            a = anchors.get((t.rate, t.deflate, t.client_processes))

            def ratio(value: float | None, base: float | None) -> str:
                if value is None or not base:
                    return "-"
                return f"{value / base:.2f}x"

            p50, p99 = t.stats["p50_ms"], t.stats["p99_ms"]
            rows.append(
                [
                    t.server + ("" if t.deflate else ", no deflate"),
                    str(t.rate),
                    str(t.client_processes),
                    f"{t.ready['open']}/{t.clients}",
                    str(t.stats["open"]),
                    f"{t.delivered_per_s:,.0f}",
                    f"{float(t.stats['frames']) / t.seconds:,.0f}",
                    f"{t.delivered_share * 100:.1f}%",
                    f"{t.state_share * 100:.1f}%",
                    "-" if p50 is None else f"{p50:.1f}",
                    "-" if p99 is None else f"{p99:.1f}",
                    str(t.closes_1013),
                    f"{t.server_cpu:.0f}%",
                    f"{t.server_wait:.0f}%",
                    f"{t.client_cpu:.0f}%",
                    f"{t.client_cpu_max:.0f}%",
                    f"{t.loop_max * 100:.0f}%",
                    f"{t.client_wait:.0f}%",
                    f"{t.client_unread / 1e6:.0f}",
                    f"{t.server_unacked / 1e6:.0f}",
                    f"{t.machine_cpu:.0f}%",
                    ratio(t.delivered_per_s, a.delivered_per_s if a else None),
                    ratio(p50, a.stats["p50_ms"] if a else None),
                    ratio(p99, a.stats["p99_ms"] if a else None),
                    ratio(t.server_cpu, a.server_cpu if a else None),
                ]
            )
        header = [
            "server", "ev/s in", "N cli", "open", "end", "delivered/s", "frames/s", "deliv",
            "state", "p50 ms", "p99 ms", "1013", "srv CPU", "srv wait", "cli CPU", "cli max",
            "loop max", "cli wait", "unread MB", "unacked MB", "all", "deliv/anch",
            "p50/anch", "p99/anch", "CPU/anch",
        ]  # fmt: skip
        intro = (
            f"WebSocket fan-out: {self.plan.clients} clients split over N Node.js processes "
            f"(N cli), {self.plan.seconds:.0f} s per trial (+{self.plan.drain:.0f} s drain), "
            "permessage-deflate offered; CPU and wait (ready to run, no CPU free) in % of "
            "one core, cli max = the busiest client process, loop max = its event loop's "
            "utilization; unread/unacked = mean MB in the client's receive / the server's "
            f"send queues while publishing; all = the machine's {os.cpu_count()} cores busy"
        )
        notes = []
        for t in self.trials:
            extra = {k: v for k, v in t.stats["closes"].items() if k != "1013"}
            if extra or t.stats["errors"] or t.stats["duplicates"]:
                notes.append(
                    f"  {t.server} @ {t.rate}/s: closes {extra or '{}'}, "
                    f"errors {t.stats['errors'] or '{}'}, duplicates {t.stats['duplicates']}"
                )
        lines = [intro, table(header, rows)]
        if self.versions:
            lines.append(self.versions)
        if notes:
            lines += ["other closes/errors:", *notes]
        return "\n".join(lines)


def run_server_trials(
    server: VidfleetServer | AnchorServer,
    plan: WsPlan,
    token: str,
    rates: tuple[int, ...],
    client_processes: int = 1,
    profile: Path | None = None,
    **client_options: Any,
) -> list[Trial]:
    trials = []
    deflate = client_options.get("deflate", True) is not False
    fleet = ClientFleet(
        server.mode,
        server.client_url(),
        plan.clients,
        token if server.mode == "ws" else None,
        client_processes,
        **client_options,
    )
    try:
        ready = fleet.ready
        print(
            f"  {server.name}: {ready['open']}/{plan.clients} sockets open in "
            f"{ready['connect_ms'] / 1000:.1f} s over {client_processes} client processes, "
            f"extensions {ready['extensions']}"
            + (f", errors {ready['errors']}" if ready["errors"] else ""),
            file=sys.stderr,
            flush=True,
        )
        time.sleep(0.5)  # the subscribe messages land
        for rate in rates:
            start_ready = {"open": fleet.stats()["open"]}
            trial_id = f"{server.mode}{server.port}-{rate}"
            fleet.command(f"start {trial_id}", "started")
            cpu_server = cpu_seconds(server.pid)
            cpu_clients = [cpu_seconds(pid) for pid in fleet.pids]
            wait_server = run_queue_wait_seconds(server.pid)
            wait_clients = sum(run_queue_wait_seconds(pid) for pid in fleet.pids)
            busy, total = machine_busy()
            queues = SocketQueues(server.port)
            label = f"{server.name}-{rate}-{client_processes}".replace(" ", "_")
            sampler = None
            if profile is not None and not isinstance(server, AnchorServer):
                sampler = ServerProfile(profile, label, server.pid, plan.seconds)
            wall = time.monotonic()
            queues.start()
            published = server.publish(rate, plan.seconds, trial_id)
            client_unread, server_unacked = queues.means()
            if sampler is not None:
                sampler.wait()
            time.sleep(plan.drain)
            stats = fleet.stats()
            wall = time.monotonic() - wall
            busy_after, total_after = machine_busy()
            client_cpu = [
                (cpu_seconds(pid) - before) / wall * 100
                for pid, before in zip(fleet.pids, cpu_clients, strict=True)
            ]
            waited_clients = sum(run_queue_wait_seconds(pid) for pid in fleet.pids)
            trial = Trial(
                server=server.name,
                rate=rate,
                seconds=plan.seconds,
                published=published,
                clients=plan.clients,
                ready=start_ready,
                stats=stats,
                server_cpu=(cpu_seconds(server.pid) - cpu_server) / wall * 100,
                client_cpu=sum(client_cpu),
                client_processes=client_processes,
                client_cpu_max=max(client_cpu),
                anchor=isinstance(server, AnchorServer),
                deflate=deflate,
                machine_cpu=(busy_after - busy) / max(1.0, total_after - total) * 100,
                server_wait=(run_queue_wait_seconds(server.pid) - wait_server) / wall * 100,
                client_wait=(waited_clients - wait_clients) / wall * 100,
                client_unread=client_unread,
                server_unacked=server_unacked,
            )
            print(
                f"  {server.name} @ {rate}/s, {client_processes} client processes: "
                f"{trial.delivered_per_s:,.0f} delivered/s, p50 {stats['p50_ms']} ms, "
                f"p99 {stats['p99_ms']} ms, client CPU "
                + " ".join(f"{c:.0f}%" for c in client_cpu),
                file=sys.stderr,
                flush=True,
            )
            trials.append(trial)
    finally:
        fleet.close()
    return trials


def versions() -> str:
    from importlib.metadata import version

    node = subprocess.run([node_binary(), "--version"], capture_output=True, text=True)
    pkg = json.loads((CLIENT_DIR / "package-lock.json").read_text())["packages"]
    names = ["uvicorn", "websockets", "starlette", "flask-socketio", "python-socketio"]
    names += ["python-engineio", "simple-websocket", "gevent"]
    py = ", ".join(f"{n} {version(n)}" for n in names)
    js = ", ".join(f"{n} {pkg[f'node_modules/{n}']['version']}" for n in ("ws", "socket.io-client"))
    return f"versions: {py}; Node {node.stdout.strip()}, {js}"


def run_ws(
    env: BenchEnv,
    *,
    quick: bool,
    client_processes: tuple[int, ...] = (1,),
    profile: Path | None = None,
) -> WsResult:
    try:
        import flask_socketio  # noqa: F401
        import gevent  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "the WebSocket bench's anchor needs the bench extra: pip install -e '.[bench]'"
        ) from exc
    ensure_client_deps()
    plan = QUICK if quick else FULL
    result = WsResult(plan=plan, versions=versions())

    # The Node client's zlib settings: see CLIENT_ZLIB. The rows without permessage-deflate
    # show what the servers do when the client's inflating is out of the way.
    # Every trial gets a fresh server and a fresh set of connections, so the backlog a
    # server built at one rate (or its dead sockets) cannot weigh on the next trial; the
    # servers take turns at each rate.
    def anchor() -> AnchorServer:
        return AnchorServer(env)

    def vidfleet(workers: int) -> Callable[[], VidfleetServer]:
        return lambda: VidfleetServer(env, workers=workers)

    Make = Callable[[], VidfleetServer | AnchorServer]
    runs: list[tuple[Make, dict[str, Any]]] = [
        (anchor, CLIENT_ZLIB),
        (vidfleet(1), CLIENT_ZLIB),
        (vidfleet(2), CLIENT_ZLIB),
    ]
    plain: list[tuple[Make, dict[str, Any]]] = [
        (anchor, {"deflate": False}),
        (vidfleet(1), {"deflate": False}),
    ]
    for rate in plan.rates:
        for processes in client_processes:
            for make, client_options in runs + (plain if rate in plan.plain_rates else []):
                server = make()
                try:
                    server.start()
                    result.trials += run_server_trials(
                        server,
                        plan,
                        env.admin_token,
                        (rate,),
                        processes,
                        profile,
                        **client_options,
                    )
                finally:
                    server.stop()
    return result
