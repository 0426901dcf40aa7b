"""``make run`` starts the whole fleet (embedded Redis, web, worker, scheduler) from the
checkout, serves /healthz, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import redis

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
OUR_VARIABLES = ("REDIS_URL", "DATABASE_URL", "PORT")


def test_make_run_serves_health_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFLEET_")}
    for name in OUR_VARIABLES:
        env.pop(name, None)
    env.update(PORT=str(port), VIDFLEET_DATA_DIR=str(tmp_path / "var"))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=120, interval=0.25, what=f"make run to serve (log: {log})")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        output = log.read_text()
        token = (tmp_path / "var" / "admin_token").read_text().strip()
        assert f"admin token: {token}" in output
        assert re.search(rf"http://127\.0\.0\.1:{port}/", output)
        jobs = httpx.get(
            f"http://127.0.0.1:{port}/api/jobs", headers={"Authorization": f"Bearer {token}"}
        )
        assert jobs.status_code == 200
        # The embedded Redis keeps an AOF under the data dir and listens on a socket.
        assert (tmp_path / "var" / "redis.sock").exists()
        wait_for(
            lambda: list((tmp_path / "var" / "redis").glob("appendonly*")),
            timeout=10,
            what="the AOF file",
        )
        # The scheduler process is up and holds the scheduler lease.
        embedded = redis.Redis.from_url(f"unix://{tmp_path / 'var' / 'redis.sock'}")
        wait_for(lambda: embedded.exists("vf:scheduler:lease"), timeout=60, what="the lease")
        embedded.close()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    wait_for(lambda: _group_gone(process.pid), timeout=15, what="every process of make run")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
