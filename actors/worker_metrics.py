"""Dramatiq's own Prometheus middleware, when ``VIDFLEET_WORKER_METRICS_PORT`` is set.

Dramatiq's ``Prometheus`` counts messages, errors, retries, dead letters, messages in
progress and their durations in prometheus-client's multiprocess mode (a file per
process in ``dramatiq_prom_db``) and serves them all from one extra process of the
worker fleet on ``dramatiq_prom_host:dramatiq_prom_port``. That process is forked from
Dramatiq's main process, which never loads our code, so those three come from the
environment of the ``dramatiq`` command: the Procfile's worker line sets them from
``VIDFLEET_WORKER_METRICS_PORT`` (loopback unless ``VIDFLEET_WORKER_METRICS_HOST``
says otherwise; the exposition has no credential) and a folder per run under the data
dir, so no run adds up the files of an earlier one. The folders of runs whose main
process is gone are removed here.

prometheus-client picks its multiprocess mode when first imported: nothing a worker
loads before its boot (the actors and what they import) may import it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dramatiq.middleware import Middleware

from db.settings import Settings

#: The Procfile's folder of runs, each in a folder named by its main process's pid.
RUNS_FOLDER = "worker-metrics"


def worker_metrics(settings: Settings) -> list[Middleware]:
    """Dramatiq's Prometheus middleware, or nothing while the port is 0."""
    if not settings.worker_metrics_port:
        return []
    # Imported only now: the module reads its environment and makes its folder.
    from dramatiq.middleware import prometheus

    _forget_finished_runs(Path(prometheus.DB_PATH))
    return [prometheus.Prometheus()]


def _forget_finished_runs(run_dir: Path) -> None:
    """Remove the sibling folders named by the pid of a main process that is gone;
    only under the Procfile's folder of runs (never, say, in /tmp)."""
    if run_dir.parent.name != RUNS_FOLDER:
        return
    for folder in run_dir.parent.iterdir():
        if folder != run_dir and folder.name.isdigit() and not _alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
