"""The ``vidfleet`` console script, run as a process against a real server, real
workers and the local media server: downloads with ``--wait``, its failures, a web
restart under it, Ctrl-C, the job commands and ``migrate``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory

from db.migrate import MIGRATIONS, alembic_config
from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import free_port, wait_for, wait_for_job

#: The console script installed next to the interpreter running the tests.
VIDFLEET = Path(sys.executable).with_name("vidfleet")
JOB_LINE = re.compile(r"queued: job ([0-9a-f-]{36})")


def cli_env(url: str, token: str | None = ADMIN_TOKEN, **variables: str) -> dict[str, str]:
    env = {**os.environ, "VIDFLEET_URL": url, **variables}
    env.pop("VIDFLEET_TOKEN", None)
    if token is not None:
        env["VIDFLEET_TOKEN"] = token
    return env


def vidfleet(
    *args: str, url: str, token: str | None = ADMIN_TOKEN, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VIDFLEET), *args],
        env=cli_env(url, token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Running:
    """A ``vidfleet`` process in the background whose stdout and stderr lines are
    collected as they come."""

    def __init__(self, *args: str, url: str) -> None:
        self.process = subprocess.Popen(
            [str(VIDFLEET), *args],
            env=cli_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
            for pipe, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe: Any, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)

    def wait_for_line(self, pattern: str, *, stream: str = "err", timeout: float = 30) -> str:
        lines = self.err if stream == "err" else self.out
        found = wait_for(
            lambda: next((line for line in list(lines) if re.search(pattern, line)), None),
            timeout=timeout,
            what=f"a line matching {pattern!r} (have {lines})",
        )
        return str(found)

    def job_id(self) -> str:
        match = JOB_LINE.search(self.wait_for_line(JOB_LINE.pattern, stream="out"))
        assert match is not None
        return match[1]

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        for reader in self.readers:
            reader.join(5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Background ``vidfleet`` processes; whatever a test leaves running is killed."""
    started: list[Running] = []
    yield started
    for process in started:
        process.stop()


def job_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = JOB_LINE.search(result.stdout)
    assert match is not None, result.stdout
    return match[1]


def running_job(client: httpx.Client, job_id: str) -> bool:
    job = client.get(f"/api/jobs/{job_id}").json()
    return job["status"] == "running" and job["stage"] == "downloading"


def test_download_wait_exits_0_with_the_video_and_a_second_time_1_as_a_duplicate(
    server: Any, worker: Any, media_server: Any, api: httpx.Client
) -> None:
    url = media_server.url("/media/cli-first.mp4")
    done = vidfleet("download", url, "--wait", url=server.url)
    assert done.returncode == 0, done.stderr
    job = api.get(f"/api/jobs/{job_id_of(done)}").json()
    assert job["status"] == "succeeded"
    video_id = job["result"]["video_id"]
    video = api.get(f"/api/videos/{video_id}").json()
    assert f"succeeded: video {video_id}: " in done.stdout
    assert video["title"] in done.stdout
    # Not a terminal: plain lines of the job's progress on stderr, no bar drawn in place.
    assert re.search(r"job [0-9a-f]{8} (queued|running)", done.stderr)
    assert "\r" not in done.stderr

    again = vidfleet("download", url, url=server.url)
    assert again.returncode == 1
    assert f"already in the library: video {video_id}" in again.stderr


def test_download_wait_exits_2_after_a_failure_with_its_reason_and_job_retry_requeues_it(
    server: Any, worker: Any, media_server: Any, api: httpx.Client
) -> None:
    failed = vidfleet("download", media_server.url("/missing/cli.mp4"), "--wait", url=server.url)
    assert failed.returncode == 2, failed.stderr
    job_id = job_id_of(failed)
    assert api.get(f"/api/jobs/{job_id}").json()["status"] == "failed"
    assert re.search(rf"job {job_id} failed: .*404.* \(not_found\)", failed.stderr)

    # A job is named by the first 8 characters of its id, as `vidfleet jobs` shows it.
    retried = vidfleet("job", "retry", job_id[:8], url=server.url)
    assert retried.returncode == 0, retried.stderr
    retry = api.get(f"/api/jobs/{job_id_of(retried)}").json()
    assert retry["retry_of"] == job_id
    assert f"a retry of {job_id}" in retried.stdout


def test_refusals_exit_1_with_one_line_saying_why(server: Any, media_server: Any) -> None:
    bad_url = vidfleet("download", "ftp://example.com/video.mp4", url=server.url)
    assert bad_url.returncode == 1
    assert "invalid_url, field url" in bad_url.stderr
    assert len(bad_url.stderr.strip().splitlines()) == 1

    wrong = vidfleet("jobs", url=server.url, token="not-the-token-0123456789")
    assert wrong.returncode == 1
    assert "401 unauthorized" in wrong.stderr and "VIDFLEET_TOKEN" in wrong.stderr
    assert "not-the-token" not in wrong.stderr  # a token is never printed
    missing = vidfleet("jobs", url=server.url, token=None)
    assert missing.returncode == 1
    assert "set $VIDFLEET_TOKEN" in missing.stderr

    viewer = vidfleet(
        "download", media_server.url("/media/x.mp4"), url=server.url, token=VIEWER_TOKEN
    )
    assert viewer.returncode == 1
    assert "403 forbidden" in viewer.stderr

    in_argv = subprocess.run(
        [str(VIDFLEET), "jobs", "--token", ADMIN_TOKEN],
        env=cli_env(server.url, token=None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert in_argv.returncode == 0, in_argv.stderr
    assert "visible to other users" in in_argv.stderr

    for url in ("ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "not a url"):
        refused = vidfleet("jobs", url=url)
        assert refused.returncode == 1
        assert refused.stderr.startswith("vidfleet: ") and "Traceback" not in refused.stderr


def test_an_unreachable_server_exits_1_at_once(media_server: Any) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = vidfleet("download", media_server.url("/media/x.mp4"), "--wait", url=nobody)
    assert result.returncode == 1
    assert f"cannot reach {nobody}" in result.stderr
    # No retries before the job exists: a refused connection ends the command.
    assert time.monotonic() - started < 10


def test_download_wait_follows_the_job_through_a_web_restart(
    start_web: Any, worker: Any, media_server: Any, running: list[Running]
) -> None:
    web, port = start_web()
    url = f"http://127.0.0.1:{port}"
    # Throttled hard (about 15 s): the job outlives the restart even on a loaded machine.
    waiter = Running("download", media_server.url("/crawl/cli-restart.mp4"), "--wait", url=url)
    running.append(waiter)
    job_id = waiter.job_id()
    waiter.wait_for_line(r"running")  # the socket is open and has delivered an event
    web.kill()  # the socket drops with no close frame; the job goes on in the worker
    web.wait()
    waiter.wait_for_line(r"lost the live connection")
    start_web(PORT=str(port))
    assert waiter.finish() == 0, "".join(waiter.err)
    assert "vidfleet: reconnected\n" in waiter.err
    assert any(f"job {job_id} succeeded: video " in line for line in waiter.out)


def test_ctrl_c_stops_waiting_but_not_the_job_and_job_cancel_ends_it(
    server: Any, worker: Any, media_server: Any, api: httpx.Client, running: list[Running]
) -> None:
    url = media_server.url("/crawl/cli-cancel.mp4")
    first = Running("download", url, "--wait", url=server.url)
    running.append(first)
    job_id = first.job_id()
    wait_for(lambda: running_job(api, job_id), what="the download to start")
    # The same URL again follows the job already running (200, not a second job).
    second = Running("download", url, "--wait", url=server.url)
    running.append(second)
    assert "already queued: job " + job_id in second.wait_for_line("already queued", stream="out")
    second.wait_for_line("running")

    first.process.send_signal(signal.SIGINT)
    assert first.finish() == 130
    assert any(f"job {job_id} keeps running" in line for line in first.err)
    assert api.get(f"/api/jobs/{job_id}").json()["status"] == "running"

    cancelled = vidfleet("job", "cancel", job_id, url=server.url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {job_id}: cancel requested" in cancelled.stdout
    assert wait_for_job(api, job_id, timeout=20)["status"] == "cancelled"
    assert second.finish() == 2
    assert re.search(rf"job {job_id} cancelled: .+ \(cancelled\)", "".join(second.err))

    again = vidfleet("job", "cancel", job_id, url=server.url)
    assert again.returncode == 1
    assert "409 finished" in again.stderr


def test_jobs_lists_filters_and_prints_json_without_escape_sequences(
    server: Any, media_server: Any, api: httpx.Client
) -> None:
    # No worker: the jobs stay queued until cancelled.
    hostile = "title \x1b]0;owned\x07 \x1b[2J\u202e end"
    queued = api.post(
        "/api/videos/download",
        json={"url": media_server.url("/media/cli-a.mp4"), "title": hostile},
    ).json()
    other = api.post("/api/videos/download", json={"url": media_server.url("/media/cli-b.mp4")})
    cancelled = other.json()
    assert api.post(f"/api/jobs/{cancelled['id']}/cancel").status_code == 202

    table = vidfleet("jobs", url=server.url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATUS", "PROGRESS", "AGE", "URL", "/", "TITLE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[queued["id"][:8]][1:3] == ["download", "queued"]
    assert rows[cancelled["id"][:8]][1:3] == ["download", "cancelled"]
    assert "title" in table.stdout and "end" in table.stdout
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", table.stdout)

    only = vidfleet("jobs", "--status", "cancelled", url=server.url)
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == [cancelled["id"][:8]]

    raw = vidfleet("jobs", "--json", "--kind", "download", url=server.url)
    page = json.loads(raw.stdout)
    assert {job["id"] for job in page["items"]} == {queued["id"], cancelled["id"]}
    assert page["next"] is None
    assert (
        next(job for job in page["items"] if job["id"] == queued["id"])["params"]["title"]
        == hostile
    )

    shown = vidfleet("job", "show", queued["id"][:8], url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert f"id:        {queued['id']}" in shown.stdout
    assert "status:    queued" in shown.stdout
    assert "\x1b" not in shown.stdout

    too_many = vidfleet("jobs", "--limit", "500", url=server.url)
    assert too_many.returncode == 1
    assert "invalid_limit, field limit" in too_many.stderr
    unknown = vidfleet("job", "show", "0123abcd", url=server.url)
    assert unknown.returncode == 1
    assert "no recent job starts with 0123abcd" in unknown.stderr
    not_an_id = vidfleet("job", "show", "../../videos", url=server.url)
    assert not_an_id.returncode == 1
    assert "is not a job id" in not_an_id.stderr


def test_download_wait_draws_a_progress_bar_on_a_terminal(
    server: Any, worker: Any, media_server: Any
) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(VIDFLEET), "download", media_server.url("/slow/cli-bar.mp4"), "--wait"],
        env=cli_env(server.url, COLUMNS="100"),
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert process.wait(60) == 0
    assert process.stdout is not None and "succeeded: video" in process.stdout.read()
    text = drawn.decode()
    assert "\r\x1b[K" in text  # the line is redrawn in place
    assert re.search(r"running: downloading \[#*-*\] +\d+%", text), text[-2000:]
    assert text.endswith("\n")  # and ended before the outcome


def test_library_relayout_dry_run_prints_the_moves_then_the_run_its_summary(
    server: Any, worker: Any, settings: Any
) -> None:
    from tests.actors.test_relayout import add_old_video, tree

    first = add_old_video(settings, 1, "Sigur Rós", "Hoppípolla", "youtube", "r1")
    second = add_old_video(settings, 2, None, "Song", "vimeo", "s2")
    before = tree(settings.media_root)

    dry = vidfleet("library", "relayout", "--dry-run", url=server.url)
    assert dry.returncode == 0, dry.stderr
    assert JOB_LINE.search(dry.stdout)
    assert (
        f"video {first}: Sigur_Ros/Hoppipolla_[youtube-r1].mp4 -> Sigur Rós/Hoppípolla [r1].mp4"
        in dry.stdout
    )
    assert (
        f"video {second}: Unknown_Artist/Song_[vimeo-s2].mp4 -> Unknown Artist/Song [s2].mp4"
        in dry.stdout
    )
    assert "2 videos would move; nothing was touched (dry run)" in dry.stdout
    assert tree(settings.media_root) == before
    # The progress display: a dry run of two videos may be over before its first look.
    assert re.search(r"job [0-9a-f]{8} (queued|running|succeeded)", dry.stderr)

    viewer = vidfleet("library", "relayout", url=server.url, token=VIEWER_TOKEN)
    assert viewer.returncode == 1
    assert "403 forbidden" in viewer.stderr
    assert tree(settings.media_root) == before

    moved = vidfleet("library", "relayout", url=server.url)
    assert moved.returncode == 0, moved.stderr
    assert "succeeded: 2 videos moved, 0 skipped, 0 failed" in moved.stdout
    assert sorted(tree(settings.media_root)) == [
        "Sigur Rós/Hoppípolla [r1].mp4",
        "Unknown Artist/Song [s2].mp4",
    ]
    again = vidfleet("library", "relayout", "--dry-run", url=server.url)
    assert again.returncode == 0, again.stderr
    assert "0 videos would move" in again.stdout


def test_migrate_creates_the_schema_of_a_fresh_database_and_then_has_nothing_to_do(
    tmp_path: Path,
) -> None:
    database = tmp_path / "fresh.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "VIDFLEET_DATA_DIR": str(tmp_path / "data"),
    }
    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    assert head is not None and MIGRATIONS.is_dir()

    first = subprocess.run(
        [str(VIDFLEET), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"the database was upgraded from an empty database to {head}\n"
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert {"jobs", "videos", "artists"} <= tables
    assert revision == head

    second = subprocess.run(
        [str(VIDFLEET), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"the database is already at the latest migration ({head})\n"


def user_command(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``vidfleet user ...`` on the tests' database (their settings are in the environment)."""
    return subprocess.run(
        [str(VIDFLEET), "user", *args],
        input=stdin,
        env=cli_env("http://127.0.0.1:9", token=None),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_add_then_sign_in_as_the_user_and_list_passwd_remove(server: Any) -> None:
    added = user_command("add", "Uma", "--role", "admin", "--password-stdin", stdin="first pass\n")
    assert added.returncode == 0, added.stderr
    assert "Uma added (admin)" in added.stdout

    def sign_in(password: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/api/session",
            json={"username": "uma", "password": password},
            headers={"Origin": server.url},
        )

    signed_in = sign_in("first pass")
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["name"] == "Uma" and signed_in.json()["role"] == "admin"

    twice = user_command("add", "UMA", "--password-stdin", stdin="other pass\n")
    assert twice.returncode == 1
    assert twice.stderr == "vidfleet: a user named 'UMA' already exists\n"
    short = user_command("add", "val", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "8 to 1024 characters" in short.stderr
    hostile = user_command("add", "a\x1b[2Jb", "--password-stdin", stdin="long enough\n")
    assert hostile.returncode == 1 and "\x1b" not in hostile.stderr

    listed = user_command("list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["ID", "ROLE", "AGE", "NAME"]
    assert listed.stdout.splitlines()[1].split()[1::2] == ["admin", "Uma"]

    changed = user_command("passwd", "uma", "--password-stdin", stdin="second pass\n")
    assert changed.returncode == 0, changed.stderr
    assert sign_in("first pass").status_code == 401
    assert sign_in("second pass").status_code == 200
    unknown = user_command("passwd", "nobody", "--password-stdin", stdin="second pass\n")
    assert unknown.returncode == 1 and "there is no user 'nobody'" in unknown.stderr

    removed = user_command("remove", "Uma")
    assert removed.returncode == 0, removed.stderr
    assert sign_in("second pass").status_code == 401
    assert user_command("remove", "Uma").returncode == 1
    assert user_command("list").stdout == "no users\n"


def test_user_add_prompts_twice_for_the_password_on_a_terminal(server: Any) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(VIDFLEET), "user", "add", "wes"],
        env=cli_env(server.url, token=None),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # The terminal becomes the process's controlling one: getpass reads /dev/tty.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)

    def answer(prompt: bytes, typed: bytes) -> None:
        seen = b""
        deadline = time.monotonic() + 30
        while prompt not in seen:
            assert time.monotonic() < deadline, f"no {prompt!r} prompt, only {seen!r}"
            if select.select([controller], [], [], 1)[0]:
                seen += os.read(controller, 1024)
        assert typed not in seen  # what was typed before (the first answer) not echoed
        os.write(controller, typed + b"\n")

    try:
        answer(b"password: ", b"typed password")
        answer(b"again: ", b"typed password")
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    signed_in = httpx.post(
        f"{server.url}/api/session",
        json={"username": "wes", "password": "typed password"},
        headers={"Origin": server.url},
    )
    assert signed_in.status_code == 200, signed_in.text


def test_token_create_for_a_user_works_as_vidfleet_token_until_revoked(server: Any) -> None:
    added = user_command("add", "xena", "--role", "admin", "--password-stdin", stdin="pass word\n")
    assert added.returncode == 0, added.stderr

    made = vidfleet("token", "create", "ci", "--user", "xena", url=server.url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("vf_")  # alone on stdout
    assert "not shown again" in made.stderr and token not in made.stderr

    jobs = vidfleet("jobs", url=server.url, token=token)
    assert jobs.returncode == 0, jobs.stderr

    listed = vidfleet("token", "list", url=server.url)
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[1] == "xena" and row[-1] == "ci" and token not in listed.stdout
    token_id = row[0]

    # Without --user the admin token is no user: the server says user is required.
    no_user = vidfleet("token", "create", "ci2", url=server.url)
    assert no_user.returncode == 1 and "field user" in no_user.stderr

    revoked = vidfleet("token", "revoke", token_id, url=server.url)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"token {token_id} revoked\n"
    refused = vidfleet("jobs", url=server.url, token=token)
    assert refused.returncode == 1
    assert "401 unauthorized" in refused.stderr and "VIDFLEET_TOKEN" in refused.stderr
    assert vidfleet("token", "list", url=server.url).stdout == "no API tokens\n"
