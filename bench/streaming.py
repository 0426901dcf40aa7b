"""Benchmark 5, direct play: the aggregate throughput of 100 concurrent clients reading
one file through ``GET /stream/{video_id}`` of the real app (uvicorn in a child process,
the Bearer token, the video row in the database), against nginx serving the same file
with ``sendfile on`` in the same run (the anchor). Each server is loaded with ``wrk``
(C, epoll: it costs far less CPU than a Python client would on the same 2 cores) for the
whole file and for open-ended ranges, ``bytes=N-`` with N random in the first half, as
players send them, and for 1 MiB ranges (the cost of a request rather than of a byte).
vidfleet runs as one uvicorn process and with ``WEB_CONCURRENCY=2`` (two workers, as the
README advises on a machine of 2 cores). The servers take turns in rounds (the order
rotates), so all see about the same machine; the median MB/s of each and its ratio to
nginx's are reported, with the range of the ratios within one round, the server's CPU
seconds per GB sent and its peak resident memory.

nginx and wrk are Debian packages: when one is missing the bench installs it with
``apt-get`` if it runs as root, and stops with a message saying what to install if not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.child import ChildServer
from bench.env import BenchEnv
from bench.http_latency import UvicornProcess
from bench.report import median, table

FILE_BYTES = 64 * 1024 * 1024
CONNECTIONS = 100
WRK_THREADS = 2
CONTAINER = "mov,mp4,m4a,3gp,3g2,mj2"  # what ffprobe calls an mp4: served as video/mp4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
RSS_SAMPLE_S = 0.1
MB = 1_000_000

# wrk's per-thread script: the Bearer header (nginx ignores it), a Range per request
# when asked, and the summary as one JSON line.
WRK_SCRIPT = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  shape = args[1]
  half = math.floor(tonumber(args[2]) / 2)
  headers = {Authorization = "Bearer " .. args[3]}
  math.randomseed(id)
end
function request()
  if shape ~= "whole" then
    local first = math.random(1, half)
    local last = shape == "mib" and tostring(first + 1048575) or ""
    headers["Range"] = "bytes=" .. first .. "-" .. last
  end
  return wrk.format("GET", nil, headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"bytes": %d, "us": %d, "requests": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d}\\n',
    summary.bytes, summary.duration, summary.requests,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

NGINX_CONF = """
daemon off;
master_process on;
worker_processes auto;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type video/mp4;
  client_body_temp_path {root}/client_body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream vidfleet {{ server 127.0.0.1:{app_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ return 200 "ok"; }}
    location /media/ {{ alias {media_root}/; }}
    # docker-compose.yml's way: vidfleet checks the request, nginx sends the file.
    location /stream/ {{
      proxy_pass http://vidfleet;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location /_library/ {{ internal; alias {media_root}/; }}
  }}
}}
"""


@dataclass(frozen=True)
class StreamPlan:
    """How many rounds (every server once per request shape, in an order that rotates
    from round to round) and the seconds of a wrk run of a long shape."""

    rounds: int
    seconds: int


@dataclass(frozen=True)
class Shape:
    """What a request asks for (the Lua script's mode) and how long a run lasts."""

    mode: str
    seconds: Callable[[StreamPlan], int]


FULL = StreamPlan(rounds=3, seconds=2)
QUICK = StreamPlan(rounds=1, seconds=2)
SHAPES = {
    "whole file": Shape("whole", lambda plan: plan.seconds),
    "bytes=N-": Shape("open", lambda plan: plan.seconds),
    # Short requests: their rate settles within a second.
    "1 MiB ranges": Shape("mib", lambda plan: max(plan.seconds // 2, 1)),
}


@dataclass(frozen=True)
class Load:
    """One wrk run against one server: what it read, and the server's CPU and peak
    resident size meanwhile."""

    bytes: int
    seconds: float
    requests: int
    cpu_seconds: float
    peak_rss: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / MB

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu_seconds / (self.bytes / 1e9)


@dataclass
class StreamResult:
    """Every load per (server, shape), one per round; the first server is the anchor."""

    servers: list[str]
    loads: dict[tuple[str, str], list[Load]] = field(default_factory=dict)
    file_bytes: int = FILE_BYTES
    seconds: int = 0

    def render(self) -> str:
        header = [
            "server", "request", "runs", "MB/s", "min-max", "CPU s/GB", "peak RSS MB",
            "vs nginx", "rounds min-max",
        ]  # fmt: skip
        rows = []
        for shape in SHAPES:
            anchor = self.loads[self.servers[0], shape]
            for i, server in enumerate(self.servers):
                loads = self.loads[server, shape]
                rates = [load.mb_per_s for load in loads]
                rounds = [
                    ours.mb_per_s / ref.mb_per_s for ours, ref in zip(loads, anchor, strict=True)
                ]
                rows.append(
                    [
                        server + (" (anchor)" if i == 0 else ""),
                        shape,
                        str(len(loads)),
                        f"{median(rates):.0f}",
                        f"{min(rates):.0f}-{max(rates):.0f}",
                        f"{median([load.cpu_per_gb for load in loads]):.2f}",
                        f"{max(load.peak_rss for load in loads) / MB:.0f}",
                        f"{median(rates) / median([x.mb_per_s for x in anchor]):.2f}x",
                        f"{min(rounds):.2f}-{max(rounds):.2f}",
                    ]
                )
        intro = (
            f"Direct play: {CONNECTIONS} wrk connections ({WRK_THREADS} threads), "
            f"{self.seconds} s per run (1 MiB ranges: half that), one "
            f"{self.file_bytes // (1024 * 1024)} MiB file; bytes=N- and 1 MiB ranges from N, "
            f"N random in its first half; MB = 10^6 bytes; CPU and RSS of the server's processes"
        )
        return f"{intro}\n{table(header, rows)}"


def debian_binary(name: str, package: str, candidates: tuple[str, ...] = ()) -> str:
    """The path of ``name``, installing Debian's ``package`` first when it is missing
    and this process is root; a clear error when it is missing and it is not."""

    def find() -> str | None:
        return shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)

    found = find()
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{name} is missing: install the Debian package {package} "
            f"(apt-get install -y {package}), or run the bench as root to let it do so"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=environment, capture_output=True).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=environment, capture_output=True)
        retried = subprocess.run(install, env=environment, capture_output=True, text=True)
        if retried.returncode:
            raise RuntimeError(f"apt-get could not install {package}:\n{retried.stderr[-2000:]}")
    found = find()
    if not found:
        raise RuntimeError(f"installed {package}, but {name} is still not found")
    return found


class NginxProcess(ChildServer):
    """nginx in the foreground with a config of its own under the run's temp dir,
    serving the media root under ``/media/`` with sendfile."""

    name = "nginx"

    def __init__(self, env: BenchEnv, binary: str, media_root: Path, app_port: int) -> None:
        super().__init__(env, "nginx")
        self.binary = binary
        self.root = env.root / "nginx"
        self.root.mkdir()
        # Its workers run as "nobody" when started as root, and the data dir is 0700.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(
            user=user, root=self.root, port=self.port, media_root=media_root, app_port=app_port
        )
        self.conf = self.root / "nginx.conf"
        self.conf.write_text(conf)

    def argv(self) -> list[str]:
        return [
            self.binary, "-p", str(self.root), "-c", str(self.conf),
            "-e", str(self.root / "error.log"),
        ]  # fmt: skip


class StreamingUvicorn(UvicornProcess):
    """The app as in the HTTP bench, with ``WEB_CONCURRENCY`` workers (uvicorn's
    ``--workers`` default, as the Procfile passes it)."""

    def __init__(self, env: BenchEnv, *, workers: int, accel_prefix: str = "") -> None:
        super().__init__(env)
        self.workers = workers
        self.accel_prefix = accel_prefix
        self.log_path = env.root / f"uvicorn-stream-{workers}{'-accel' if accel_prefix else ''}.log"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "WEB_CONCURRENCY": str(self.workers),
            "VIDFLEET_X_ACCEL_PREFIX": self.accel_prefix,
        }


def make_video_file(media_root: Path, size: int) -> Path:
    """``size`` random bytes under the media root (throughput needs no valid video)."""
    path = media_root / "bench" / "direct-play.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for _ in range(size // MB):
            out.write(os.urandom(MB))
        out.write(os.urandom(size % MB))
    return path


def insert_video(database_url: str, media_root: Path, path: Path) -> int:
    """The video row ``/stream`` serves ``path`` from; its id."""
    from db.engine import make_engine, session_factory
    from db.models import Video

    engine = make_engine(database_url)
    try:
        with session_factory(engine).begin() as session:
            video = Video(
                title="direct play bench",
                source_url="http://127.0.0.1/bench/direct-play.mp4",
                extractor="generic",
                extractor_id="direct-play-bench",
                path=str(path.relative_to(media_root)),
                size=path.stat().st_size,
                container=CONTAINER,
                vcodec="h264",
                acodec="aac",
            )
            session.add(video)
            session.flush()
            return video.id
    finally:
        engine.dispose()


def server_usage(pid: int) -> tuple[float, int]:
    """User + system CPU seconds and resident bytes of ``pid`` and its live children
    (nginx's workers)."""
    return usage_of(lambda proc, fields: proc == pid or int(fields[1]) == pid)


def usage_of(keep: Callable[[int, list[str]], bool]) -> tuple[float, int]:
    """User + system CPU seconds (each process's own) and resident bytes, summed over
    the processes ``keep(pid, stat fields after the name)`` chooses."""
    cpu, rss = 0, 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if keep(int(name), fields):
            cpu += int(fields[11]) + int(fields[12])
            rss += int(fields[21]) * PAGE_BYTES
    return cpu / CLOCK_TICKS, rss


def check_answers(url: str, token: str, file: bytes) -> None:
    """Before loading a server: a range answers 206 with the right bytes and the whole
    file 200 with its length (wrk only counts bytes and statuses >= 400)."""
    headers = {"Authorization": f"Bearer {token}"}
    start = len(file) // 3
    with httpx.Client(headers=headers, timeout=30) as client:
        ranged = client.get(url, headers={"Range": f"bytes={start}-{start + 999}"})
        whole = client.head(url)
    if ranged.status_code != 206 or ranged.content != file[start : start + 1000]:
        raise RuntimeError(f"{url} answered a range with {ranged.status_code}")
    if whole.status_code != 200 or int(whole.headers["content-length"]) != len(file):
        raise RuntimeError(f"{url} answered HEAD with {whole.status_code} {whole.headers}")


def run_wrk(
    wrk: str, script: Path, url: str, token: str, mode: str, seconds: int, pid: int
) -> Load:
    """One wrk run; the server's CPU over it and its resident size, sampled meanwhile."""
    argv = [
        wrk, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "60s",
        "-s", str(script), url, "--", mode, str(FILE_BYTES), token,
    ]  # fmt: skip
    cpu_before, peak_rss = server_usage(pid)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as load:
        deadline = time.monotonic() + seconds + 60
        while load.poll() is None and time.monotonic() < deadline:
            peak_rss = max(peak_rss, server_usage(pid)[1])
            time.sleep(RSS_SAMPLE_S)  # sampling the server while wrk runs
        if load.poll() is None:
            load.kill()
        out, err = load.communicate()
    cpu = server_usage(pid)[0] - cpu_before
    if load.returncode:
        raise RuntimeError(f"wrk failed ({load.returncode}): {err or out}")
    summary = json.loads(out.strip().splitlines()[-1])
    errors = {k: summary[k] for k in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        raise RuntimeError(f"{url} ({mode}): wrk saw errors {errors}")
    return Load(
        bytes=summary["bytes"],
        seconds=summary["us"] / 1e6,
        requests=summary["requests"],
        cpu_seconds=cpu,
        peak_rss=peak_rss,
    )


def run_stream(env: BenchEnv, *, quick: bool) -> StreamResult:
    """Make the file and its row, start nginx and uvicorn, load each in turn."""
    from db.settings import get_settings

    plan = QUICK if quick else FULL
    nginx_binary = debian_binary("nginx", "nginx", ("/usr/sbin/nginx",))
    wrk = debian_binary("wrk", "wrk")
    media_root = get_settings().media_root
    path = make_video_file(media_root, FILE_BYTES)
    video_id = insert_video(env.database_url, media_root, path)
    script = env.root / "direct-play.lua"
    script.write_text(WRK_SCRIPT)
    one, two = StreamingUvicorn(env, workers=1), StreamingUvicorn(env, workers=2)
    accel = StreamingUvicorn(env, workers=1, accel_prefix="/_library/")
    nginx = NginxProcess(env, nginx_binary, media_root, accel.port)
    servers: dict[str, tuple[ChildServer, str]] = {
        "nginx sendfile": (nginx, f"{nginx.url}/media/{path.relative_to(media_root)}"),
        "vidfleet /stream": (one, f"{one.url}/stream/{video_id}"),
        "vidfleet WEB_CONCURRENCY=2": (two, f"{two.url}/stream/{video_id}"),
        # nginx (started first) sends the file; the CPU column is vidfleet's alone.
        "vidfleet behind nginx (X-Accel-Redirect)": (accel, f"{nginx.url}/stream/{video_id}"),
    }
    result = StreamResult(servers=list(servers), seconds=plan.seconds)
    try:
        file = path.read_bytes()
        for server, url in servers.values():
            server.start()
            check_answers(url, env.admin_token, file)
            run_wrk(wrk, script, url, env.admin_token, "whole", 1, server.pid)  # warm-up
        names = list(servers)
        for label, shape in SHAPES.items():
            for round_ in range(plan.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    server, url = servers[name]
                    load = run_wrk(
                        wrk, script, url, env.admin_token, shape.mode, shape.seconds(plan),
                        server.pid,
                    )  # fmt: skip
                    result.loads.setdefault((name, label), []).append(load)
    finally:
        for server, _ in servers.values():
            server.stop()
    return result
