"""``make run``: the whole fleet on one machine, from one command.

Checks the settings, upgrades the database, starts the embedded Redis when
``REDIS_URL`` is unset, prints the URL and the admin token, then runs the Procfile's
``web``, ``worker`` and ``scheduler`` under honcho. The web listens on 127.0.0.1 only
unless ``VIDFLEET_HOST`` says otherwise. Ctrl-C (or SIGTERM) stops honcho, which stops
its processes, and then the embedded Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from db.migrate import upgrade
from db.redis_server import EmbeddedRedis
from db.settings import Settings, get_settings, mask_url

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("web", "worker", "scheduler")
# A laptop's fleet is for its user: serving the network is a choice (VIDFLEET_HOST),
# while the Procfile itself keeps 0.0.0.0 for platforms that route to $PORT.
DEFAULT_HOST = "127.0.0.1"


def procfile_command(name: str) -> str:
    """The command of the Procfile's ``name`` line (what honcho or a platform runs)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no {name} line in the Procfile")


def banner(settings: Settings, *, host: str, redis_url: str) -> str:
    """What ``make run`` prints: where to open the page, the admin token, and where the
    data lives (a password in the Redis URL masked)."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{f'[{local}]' if ':' in local else local}:{settings.port}/"
    reach = "this machine only" if host == DEFAULT_HOST else f"listening on {host}"
    return (
        f"\nvidfleet is starting on {url} ({reach})\n"
        f"  open and sign in: {url}#token={quote(str(settings.admin_token))}\n"
        f"  admin token: {settings.admin_token}\n"
        f"  data: {settings.data_dir}   redis: {mask_url(redis_url)}\n"
    )


def main() -> int:
    settings = get_settings()
    upgrade(settings.database_url)
    settings.media_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("VIDFLEET_DATA_DIR", str(settings.data_dir))
    if not env.get("VIDFLEET_HOST"):  # empty would mean the Procfile's 0.0.0.0
        env["VIDFLEET_HOST"] = DEFAULT_HOST
    # The Procfile's commands (uvicorn, dramatiq, periodiq) live next to this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    embedded = None
    if settings.redis_embedded:
        embedded = EmbeddedRedis(
            settings.data_dir / "redis", unix_socket=settings.embedded_redis_socket
        ).start()
        env["REDIS_URL"] = embedded.url
    redis_url = env.get("REDIS_URL", settings.redis_url)
    print(banner(settings, host=env["VIDFLEET_HOST"], redis_url=redis_url), flush=True)
    honcho = subprocess.Popen(
        [
            sys.executable, "-m", "honcho", "start",
            "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "-p", str(settings.port),
            *PROCESSES,
        ],
        env=env,
    )  # fmt: skip

    def forward(signum: int, _frame: FrameType | None) -> None:
        honcho.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return honcho.wait()
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
