"""``make run`` starts the whole fleet (embedded Redis, web, worker, scheduler) from the
checkout, serves /healthz on 127.0.0.1 only, keeps its data dir private (0600/0700),
and Ctrl-C stops every process it started; from a fresh clone it installs only what
running needs."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
OUR_VARIABLES = ("REDIS_URL", "DATABASE_URL", "PORT")
#: How long ``make run`` may take to answer: in a fresh clone it makes its venv first.
INSTALL_TIMEOUT_S = 600


def run_env(port: int, data_dir: Path) -> dict[str, str]:
    """This environment without our variables (``make run`` picks its own), on ``port``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFLEET_")}
    for name in OUR_VARIABLES:
        env.pop(name, None)
    env.update(PORT=str(port), VIDFLEET_DATA_DIR=str(data_dir))
    return env


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def make_run(checkout: Path, port: int, data_dir: Path, log: Path) -> Iterator[None]:
    """``make run`` in ``checkout`` until it answers; Ctrl-C at the end, and every
    process it started must be gone."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=checkout,
            env=run_env(port, data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: answers(port) or process.poll() is not None,
            timeout=INSTALL_TIMEOUT_S,
            interval=0.25,
            what=f"make run to serve (log: {log})",
        )
        assert process.poll() is None, f"make run ended early: {log.read_text()[-3000:]}"
        yield
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    wait_for(lambda: _group_gone(process.pid), timeout=15, what="every process of make run")


def test_make_run_serves_health_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    with make_run(ROOT, port, tmp_path / "var", log):
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


#: What a fresh clone holds: not the venv, the caches or anything a run made.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "var", "*.egg-info", "__pycache__", ".*_cache", "node_modules",
    "test-artifacts",
)  # fmt: skip
#: The dev extra's tools (setup.cfg), by the module each installs.
DEV_TOOLS = ("pytest", "xdist", "ruff", "mypy", "playwright", "hypothesis", "importlinter")


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_make_run_in_a_fresh_clone_installs_only_what_running_needs(tmp_path: Path) -> None:
    """The venv ``make run`` makes from nothing but Python and make serves the app and
    has none of the test and lint tools: those come with ``make test``."""
    clone = tmp_path / "vidfleet"
    shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
    port = free_port()
    with make_run(clone, port, tmp_path / "var", tmp_path / "run.log"):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        venv = clone / ".venv"
        assert (venv / ".installed-run").exists() and not (venv / ".installed").exists()
        for module in DEV_TOOLS:
            found = subprocess.run(
                [str(venv / "bin" / "python"), "-c", f"import {module}"], capture_output=True
            )
            assert found.returncode != 0, f"make run installed {module}"
        # What running needs is there (the worker's media stack among it).
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import dramatiq, starlette, av, cv2, yt_dlp"],
            check=True,
        )


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
