"""A private PostgreSQL cluster for fault tests: ``initdb`` into a temporary folder,
``pg_ctl`` on a free port (its unix socket in that folder too), and helpers to stop it
and start it again while the code under test keeps running.

The cluster belongs to the test alone, so stopping it for 20 s harms nothing else, and
no server needs to be installed and running beforehand: only the binaries. Where they
are missing the tests that need it are skipped with the reason, except where the
binaries ought to be there (running as root with ``/usr/lib/postgresql`` present, as
CI does, or ``VIDFLEET_TEST_POSTGRES=required``): there a missing or broken cluster
fails the test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"  # initdb and postgres refuse to run as root
START_TIMEOUT_S = 30


def required() -> bool:
    """Whether a missing cluster is a failure here rather than a skip."""
    return os.environ.get("VIDFLEET_TEST_POSTGRES") == "required" or (
        os.geteuid() == 0 and DEBIAN_ROOT.exists()
    )


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, else
    the directory of ``pg_ctl`` on PATH."""
    versions = sorted(
        (path for path in DEBIAN_ROOT.glob("*/bin") if path.parent.name.isdigit()),
        key=lambda path: int(path.parent.name),
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    candidates = [*versions, *([Path(on_path).resolve().parent] if on_path else [])]
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


@dataclass
class PgCluster:
    """One PostgreSQL server of the test's own, trusting local connections.

    Parameters:
      bin_dir: where initdb, pg_ctl and postgres are.
      root: a folder for the data directory, the socket and the server log.
      port: the TCP port on 127.0.0.1.
    """

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The ``postgres`` database, as the settings spell it (psycopg 3)."""
        return f"postgresql+psycopg://{SERVICE_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{what} failed:\n{result.stdout}{result.stderr}\n{log}")

    def init(self) -> PgCluster:
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVICE_USER)
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", SERVICE_USER, "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        self._check(result, "initdb")
        # Speed over durability: the cluster lives as long as one test module.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 32MB\n"
            )
        return self

    def start(self) -> None:
        result = self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-w", "-t", str(START_TIMEOUT_S),
        )  # fmt: skip
        self._check(result, "pg_ctl start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session at once (as a restart for an
        upgrade does); ``immediate`` is a crash."""
        result = self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")
        self._check(result, "pg_ctl stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def remove(self) -> None:
        if self.data_dir.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster, removed afterwards; skips (or fails, see :func:`required`)
    where the binaries are missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = f"no PostgreSQL binaries (initdb, pg_ctl) under {DEBIAN_ROOT} or on PATH"
        if required():
            pytest.fail(reason)
        pytest.skip(reason)
    # Not under pytest's tmp_path: that is private to this user, and the server runs
    # as another one.
    root = Path(tempfile.mkdtemp(prefix="vidfleet-pg-"))
    cluster = PgCluster(bin_dir, root, free_port())
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.remove()
