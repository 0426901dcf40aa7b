"""Logs: request ids (given, generated, hostile ones ignored), the JSON format of real
web processes, and no credential in any line a web or worker process logs while every
credential path is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import free_port, procfile_workers, wait_for, wait_for_job
from web.launch import procfile_command

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOSTILE_IDS = [
    "x" * 65,  # too long
    "two words",
    'quote"d',
    "{json}",
    "semi;colon",
    "percent%0a",
]


def test_a_request_id_is_returned_as_given_or_generated(server: Any) -> None:
    given = httpx.get(f"{server.url}/api/jobs", headers={**AUTH, "X-Request-ID": "trace-1.a:b_"})
    assert given.headers["X-Request-ID"] == "trace-1.a:b_"
    generated = httpx.get(f"{server.url}/healthz").headers["X-Request-ID"]
    again = httpx.get(f"{server.url}/healthz").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0 and generated != again
    # The middleware's own refusals carry it too.
    refused = httpx.get(f"{server.url}/api/jobs", headers={"X-Request-ID": "refused-1"})
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (401, "refused-1")


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_hostile_request_id_is_replaced(server: Any, hostile: str) -> None:
    answer = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": hostile})
    replaced = answer.headers["X-Request-ID"]
    assert replaced != hostile and len(replaced) == 32


@contextmanager
def web_process(log: Path, **variables: str) -> Iterator[str]:
    """The Procfile's web line with the test session's environment and ``variables``,
    its output in ``log``; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "VIDFLEET_HOST": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **variables,
    }
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["sh", "-c", f"exec {procfile_command('web')}"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:

            def healthy() -> bool:
                assert process.poll() is None, log.read_text()[-3000:]
                try:
                    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(healthy, timeout=60, what="the web process")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of ``log``, each of which must be one JSON object."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_json_log_lines_carry_the_request_id_and_never_a_hostile_one(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    # With Redis gone, a scrape logs a warning inside the request.
    dead_redis = f"redis://127.0.0.1:{free_port()}"
    with web_process(log, VIDFLEET_LOG_FORMAT="json", REDIS_URL=dead_redis) as url:
        for request_id in ("scrape-1", *HOSTILE_IDS):
            answer = httpx.get(f"{url}/metrics", headers={**AUTH, "X-Request-ID": request_id})
            assert answer.status_code == 200

        def warned() -> list[dict[str, Any]]:
            return [e for e in json_lines(log) if "did not answer" in e["message"]]

        lines = wait_for(lambda: len(warned()) == 1 + len(HOSTILE_IDS) and warned())
    entries = json_lines(log)  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert lines[0]["request_id"] == "scrape-1" and lines[0]["level"] == "WARNING"
    assert all(len(e["request_id"]) == 32 for e in lines[1:])
    text = log.read_text()
    assert not any(json.dumps(hostile)[1:-1] in text for hostile in HOSTILE_IDS)
    assert any(e["logger"] == "uvicorn.error" for e in entries)  # the server's own lines


# -- no credential in any log line


ADMIN_PASSWORD = "admin-password-Quokka-4471"
VIEWER_PASSWORD = "viewer-password-Wombat-9923"
WRONG_PASSWORD = "wrong-password-Numbat-5512"
WRONG_TOKEN = "wrong-token-Bilby-0123456789"
METRICS_TOKEN = "metrics-token-Potoroo-0123456789"
SECRET_KEY = "secret-key-Dunnart-0123456789abcdefghij"
JELLYFIN_TOKEN = "jellyfin-token-Quoll-0123456789"
PLEX_TOKEN = "plex-token-Bandicoot-0123456789"
WEBHOOK_SECRET = "webhook-secret-Echidna-0123456789"


def use_every_credential(url: str, media_server: Any) -> list[str]:
    """Sign in and out, fail, make tokens, download, stream and open a WebSocket; the
    secrets that went over the wire (besides the constants above)."""
    origin = {"Origin": url}
    seen: list[str] = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as admin:
        for name, password, role in (("ada", ADMIN_PASSWORD, "admin"),
                                     ("vic", VIEWER_PASSWORD, "viewer")):  # fmt: skip
            made = admin.post("/api/users", json={"name": name, "password": password, "role": role})
            assert made.status_code == 201, made.text
        assert httpx.get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
        assert httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        viewer = httpx.get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        assert viewer.status_code == 200
    with httpx.Client(base_url=url, headers=origin, timeout=30) as browser:
        failed = browser.post("/api/session", json={"username": "ada", "password": WRONG_PASSWORD})
        assert failed.status_code == 401
        login = browser.post("/api/session", json={"username": "ada", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        cookie, csrf = login.cookies["vf_session"], login.json()["csrf"]
        seen += [cookie, csrf]
        made = browser.post("/api/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        api_token = made.json()["token"]
        seen.append(api_token)
        with connect(
            url.replace("http", "ws") + "/ws",
            additional_headers={"Cookie": f"vf_session={cookie}", "Origin": url},
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": None}))
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {api_token}"}, timeout=30
            ) as cli:
                body = {"url": media_server.url("/media/secrets.mp4")}
                job = cli.post("/api/videos/download", json=body)
                assert job.status_code == 202, job.text
                done = wait_for_job(cli, job.json()["id"])
                assert done["status"] == "succeeded", done
            ws.recv(timeout=10)  # an event arrived over the cookie's socket
        video = browser.get(f"/stream/{done['result']['video_id']}")
        assert video.status_code == 200 and video.content
        assert browser.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    return seen


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_credential_appears_in_any_web_or_worker_log_line(
    tmp_path: Path, media_server: Any, log_format: str, hook_server: Any
) -> None:
    web_log, worker_log = tmp_path / "web.log", tmp_path / "workers.log"
    # The refresh hooks' calls fail (retried, then refused), so that they log.
    hooks = {"jellyfin": hook_server(500, 401), "plex": hook_server(503, 401),
             "webhook": hook_server(500, 401)}  # fmt: skip
    variables = {
        "VIDFLEET_LOG_FORMAT": log_format,
        "VIDFLEET_METRICS_TOKEN": METRICS_TOKEN,
        "VIDFLEET_SECRET_KEY": SECRET_KEY,
        "VIDFLEET_JELLYFIN_URL": hooks["jellyfin"].url,
        "VIDFLEET_JELLYFIN_TOKEN": JELLYFIN_TOKEN,
        "VIDFLEET_PLEX_URL": hooks["plex"].url,
        "VIDFLEET_PLEX_TOKEN": PLEX_TOKEN,
        "VIDFLEET_WEBHOOK_URL": hooks["webhook"].url,
        "VIDFLEET_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VIDFLEET_HOOKS_DELAY": "0.2",
    }
    with (
        procfile_workers(worker_log, VIDFLEET_WORKER_PROCESSES="1", **variables),
        web_process(web_log, VIDFLEET_LOG_LEVEL="DEBUG", **variables) as url,
    ):
        seen = use_every_credential(url, media_server)
        wait_for(lambda: all(len(server.calls) == 2 for server in hooks.values()))
        shown = httpx.get(f"{url}/api/system/hooks", headers=AUTH, timeout=30)
        assert shown.status_code == 200, shown.text
        assert {item["last_outcome"] for item in shown.json()["items"]} == {"http 401"}
    logged = web_log.read_text() + worker_log.read_text()
    assert "aiosqlite" in logged  # the web really logged at DEBUG
    assert "Worker process is ready" in logged
    assert "refresh hook webhook: http 401" in logged
    secrets = [ADMIN_TOKEN, VIEWER_TOKEN, ADMIN_PASSWORD, VIEWER_PASSWORD, WRONG_PASSWORD,
               WRONG_TOKEN, METRICS_TOKEN, SECRET_KEY, JELLYFIN_TOKEN, PLEX_TOKEN,
               WEBHOOK_SECRET, *seen]  # fmt: skip
    leaked = [secret for secret in secrets if secret in logged]
    assert not leaked, leaked
    if log_format == "json":
        assert json_lines(web_log)
