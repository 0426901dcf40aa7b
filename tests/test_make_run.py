"""``make run`` starts the whole fleet (embedded Redis, web, worker, scheduler) from the
checkout, serves /healthz on 127.0.0.1 only, keeps its data dir private (0600/0700),
and Ctrl-C stops every process it started."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import stat
import subprocess
import sys
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
        # Only this machine can reach it, unless VIDFLEET_HOST says otherwise.
        assert listening_addresses(port) == {"127.0.0.1"}
        # Nothing under the data dir is open to the group or to others.
        created = [tmp_path / "var", *(tmp_path / "var").rglob("*")]
        assert {"vidfleet.db", "admin_token", "redis", "redis.sock", "media"} <= {
            path.name for path in created
        }
        open_to_others = {
            str(path): stat.filemode(path.lstat().st_mode)
            for path in created
            if path.lstat().st_mode & 0o077
        }
        assert open_to_others == {}
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


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port``, from
    /proc/net/tcp and /proc/net/tcp6."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if sys.byteorder == "little":  # the kernel prints each 32-bit word as an int
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def test_the_banner_masks_the_redis_password_and_says_who_can_connect(tmp_path: Path) -> None:
    from db.settings import load_settings
    from web.launch import banner

    settings = load_settings({"VIDFLEET_DATA_DIR": str(tmp_path), "PORT": "8123"})
    text = banner(settings, host="127.0.0.1", redis_url="redis://:hunter2@redis:6379/0")
    assert "hunter2" not in text
    assert "redis: redis://:***@redis:6379/0" in text
    assert "http://127.0.0.1:8123/ (this machine only)" in text
    assert f"admin token: {settings.admin_token}" in text
    text = banner(settings, host="0.0.0.0", redis_url="unix:///srv/var/redis.sock")
    assert "http://127.0.0.1:8123/ (listening on 0.0.0.0)" in text
    assert "redis: unix:///srv/var/redis.sock" in text
