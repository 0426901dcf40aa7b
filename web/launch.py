"""``make run``: the whole fleet on one machine, from one command.

Checks the settings, upgrades the database, starts the embedded Redis when
``REDIS_URL`` is unset, prints the URL and the admin token, then runs the Procfile's
``web``, ``worker`` and ``scheduler`` under honcho. Ctrl-C (or SIGTERM) stops honcho,
which stops its processes, and then the embedded Redis.
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
from db.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("web", "worker", "scheduler")


def main() -> int:
    settings = get_settings()
    upgrade(settings.database_url)
    settings.media_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("VIDFLEET_DATA_DIR", str(settings.data_dir))
    # The Procfile's commands (uvicorn, dramatiq, periodiq) live next to this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    embedded = None
    if settings.redis_embedded:
        embedded = EmbeddedRedis(
            settings.data_dir / "redis", unix_socket=settings.embedded_redis_socket
        ).start()
        env["REDIS_URL"] = embedded.url
    url = f"http://127.0.0.1:{settings.port}/"
    print(
        f"\nvidfleet is starting on {url}\n"
        f"  open and sign in: {url}#token={quote(str(settings.admin_token))}\n"
        f"  admin token: {settings.admin_token}\n"
        f"  data: {settings.data_dir}   redis: {env.get('REDIS_URL', settings.redis_url)}\n",
        flush=True,
    )
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
