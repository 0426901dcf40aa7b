"""The Procfile's worker line with VIDFLEET_WORKER_METRICS_PORT: Dramatiq's Prometheus
exposition counts the jobs the fleet ran, and in the JSON log format every line a
worker process logs while it runs a job carries the job's id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, procfile_workers, wait_for, wait_for_job


def processed(port: int, actor: str) -> float:
    """``dramatiq_messages_total`` of ``actor`` on the fleet's exposition (0 before
    it answers)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    except httpx.HTTPError:
        return 0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dramatiq_messages_total" and sample.labels["actor_name"] == actor
    )


def test_a_worker_fleet_exposes_dramatiqs_metrics_and_logs_job_ids_as_json(
    api: httpx.Client, media_server: Any, settings: Any, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "workers.log"
    # A download whose server fails: its attempts log warnings while the job runs.
    job = api.post("/api/videos/download", json={"url": media_server.url("/missing/m.mp4")})
    assert job.status_code == 202
    job_id = job.json()["id"]
    with procfile_workers(
        log,
        VIDFLEET_WORKER_PROCESSES="1",
        VIDFLEET_WORKER_THREADS="2",
        VIDFLEET_WORKER_METRICS_PORT=str(port),
        VIDFLEET_LOG_FORMAT="json",
    ):
        assert wait_for_job(api, job_id)["status"] == "failed"
        wait_for(
            lambda: processed(port, "download_video") >= 1,
            timeout=30,
            what="the download counted on the exposition",
        )
        # Nothing but loopback serves it (VIDFLEET_WORKER_METRICS_HOST's default).
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    # Each run has a folder of its own under the data dir; the finished one's is
    # removed by the next run's workers.
    assert list((settings.data_dir / "worker-metrics").iterdir())
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert entries, lines[:20]
    assert {"time", "level", "logger", "message", "pid"} <= set(entries[0])
    of_job = [entry for entry in entries if entry.get("job_id") == job_id]
    assert of_job, [entry["message"] for entry in entries]
    assert all("job_id" not in e for e in entries if "ready for action" in e["message"])
