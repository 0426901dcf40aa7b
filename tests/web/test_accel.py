"""Direct play behind nginx (the docker-compose deployment): web checks the credential
and answers ``X-Accel-Redirect``, nginx sends the file. Runs docker-compose.yml's own
nginx config against a real nginx and the app."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ADMIN_TOKEN
from tests.support import free_port, library_row, live_server, make_video, wait_for

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
)
# .ci/run installs nginx and sets this, so CI can never skip these.
REQUIRED = os.environ.get("VIDFLEET_TEST_NGINX") == "required"

pytestmark = pytest.mark.skipif(
    NGINX is None and not REQUIRED,
    reason="nginx is not installed (apt-get install nginx); CI always runs this",
)


def compose_nginx_conf(upstream: str, media_root: Path, port: int) -> str:
    """docker-compose.yml's nginx config, pointed at this test's app and library."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    conf = str(compose["configs"]["nginx"]["content"]).replace("$$", "$")
    for shipped, here in (
        ("http://web:8000", upstream),
        ("alias /data/media/;", f"alias {media_root}/;"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
    ):
        assert shipped in conf, shipped
        conf = conf.replace(shipped, here)
    return conf


@pytest.fixture
def nginx(settings: Any, tmp_path: Path) -> Iterator[str]:
    """nginx with the shipped config in front of the app with X-Accel-Redirect on."""
    from web.app import create_app

    assert NGINX, "VIDFLEET_TEST_NGINX=required but no nginx installed"
    app = create_app(dataclasses.replace(settings, x_accel_prefix="/_library/"))
    with live_server(app) as server:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(compose_nginx_conf(server.url, settings.media_root, port))
        globals_ = f"daemon off; pid {tmp_path}/nginx.pid;"
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"),
             "-g", globals_],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=15, what="nginx")
            yield url
        finally:
            process.terminate()
            process.wait(10)


def test_nginx_sends_the_file_after_web_has_checked_the_credential(
    nginx: str, settings: Any
) -> None:
    relative = "Some Artist/A title [x]_[test-1].mp4"  # a name that must be escaped
    path = settings.media_root / relative
    path.parent.mkdir(parents=True)
    make_video(path)
    video_id = library_row(settings, relative)
    body = path.read_bytes()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    whole = httpx.get(f"{nginx}/stream/{video_id}", headers=auth)
    assert whole.status_code == 200 and whole.content == body
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert whole.headers["content-security-policy"] == "sandbox"
    assert "x-accel-redirect" not in whole.headers  # nginx consumed it
    ranged = httpx.get(f"{nginx}/stream/{video_id}", headers={**auth, "Range": "bytes=1000-"})
    assert (ranged.status_code, ranged.content) == (206, body[1000:])
    assert ranged.headers["content-range"] == f"bytes 1000-{len(body) - 1}/{len(body)}"

    # No credential, no file; and the library itself cannot be asked for from outside.
    assert httpx.get(f"{nginx}/stream/{video_id}").status_code == 401
    outside = httpx.get(f"{nginx}/_library/Some%20Artist/A%20title%20%5Bx%5D_%5Btest-1%5D.mp4")
    assert outside.status_code == 404
    assert httpx.get(f"{nginx}/stream/999999", headers=auth).status_code == 404
