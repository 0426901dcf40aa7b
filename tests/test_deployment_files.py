"""The deployment files say what the code does: docker-compose.yml (Redis with AOF and
``noeviction``, PostgreSQL, healthchecks, the release before web, worker and
scheduler), the Procfile (every process type, each naming code that exists) and
``app.json``, the manifest of Heroku-style platforms (its add-ons, its settings, its
formation)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROCESS_TYPES = {"web", "worker", "scheduler", "release"}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def app_manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "app.json").read_text())
    return loaded


def setting_names() -> set[str]:
    """Every variable the settings module reads (``config("NAME", ...)``)."""
    source = (ROOT / "db" / "settings.py").read_text()
    return set(re.findall(r"config\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def procfile_variables() -> set[str]:
    """Every variable a Procfile line reads (``${NAME:-default}``)."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "Procfile").read_text()))


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def after(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} not in {argv}"
    return argv[argv.index(flag) + 1]


def importable(target: str) -> Any:
    """``module`` or ``module:attribute``, imported."""
    module_name, _, attribute = target.partition(":")
    assert importlib.util.find_spec(module_name) is not None, f"no module {module_name}"
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


# -- the Procfile


def test_the_procfile_has_every_process_type_and_only_web_binds_the_port() -> None:
    lines = procfile()
    assert set(lines) == PROCESS_TYPES
    assert "${PORT" in lines["web"]
    # ($PORT is the platform's port for the one process it routes HTTP to.)
    assert all(not re.search(r"\$\{?PORT\b", lines[name]) for name in PROCESS_TYPES - {"web"})


def test_each_procfile_line_names_code_that_exists() -> None:
    lines = {name: words(line) for name, line in procfile().items()}
    assert lines["web"][0] == "uvicorn" and "--factory" in lines["web"]
    assert callable(importable(after(lines["web"], "--factory")))
    assert isinstance(importable(after(lines["web"], "--ws")), type)
    worker = lines["worker"][lines["worker"].index("dramatiq") :]
    importable(worker[1])  # the module that declares the broker and the actors
    assert after(lines["scheduler"], "-m") == "actors.scheduler"
    assert hasattr(importable("actors.scheduler"), "main")
    assert after(lines["release"], "-m") == "db.migrate"
    assert hasattr(importable("db.migrate"), "main")


def test_every_variable_the_procfile_reads_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert {name for name in procfile_variables() if f"`{name}`" not in readme} == set()


# -- docker-compose.yml


def test_compose_runs_redis_durable_and_without_eviction() -> None:
    redis = compose()["services"]["redis"]
    argv = words(redis["command"])
    assert argv[0] == "redis-server"
    assert after(argv, "--appendonly") == "yes"
    assert after(argv, "--maxmemory-policy") == "noeviction"
    assert redis["volumes"], "the AOF must outlive the container"


def test_compose_has_the_services_and_their_healthchecks() -> None:
    services = compose()["services"]
    assert {"web", "worker", "scheduler", "redis", "postgres", "release"} <= set(services)
    for name in ("redis", "postgres", "web"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(words(services["web"]["healthcheck"]["test"]))


def test_compose_migrates_once_before_web_worker_and_scheduler_start() -> None:
    services = compose()["services"]
    release = words(services["release"]["command"])
    assert release == words(procfile()["release"])
    assert services["release"].get("restart") == "no"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "scheduler"):
        needs = services[name]["depends_on"]
        assert needs["release"]["condition"] == "service_completed_successfully", name
        assert needs["redis"]["condition"] == "service_healthy", name
        assert needs["postgres"]["condition"] == "service_healthy", name


def test_compose_runs_the_procfiles_processes() -> None:
    services = compose()["services"]
    web = words(services["web"]["command"])
    procfile_web = words(procfile()["web"])
    for flag in ("--factory", "--ws", "--ws-max-size"):
        assert after(web, flag) == after(procfile_web, flag), flag
    assert "dramatiq actors" in " ".join(words(services["worker"]["command"]))
    assert words(services["scheduler"]["command"]) == words(procfile()["scheduler"])


@pytest.mark.parametrize("service", ["web", "worker", "scheduler", "release"])
def test_compose_gives_every_process_the_same_stores_and_secrets(service: str) -> None:
    environment = compose()["services"][service]["environment"]
    assert environment["DATABASE_URL"].startswith("postgresql://")
    assert environment["DATABASE_URL"].split("@")[1].startswith("postgres:")
    assert environment["REDIS_URL"].startswith("redis://redis:")
    # Every web replica needs the same credentials and cookie key.
    for name in ("VIDFLEET_ADMIN_TOKEN", "VIDFLEET_SECRET_KEY", "VIDFLEET_VIEWER_TOKEN"):
        assert name in environment, name
    assert set(environment) - {"PATH"} <= setting_names()


# -- app.json


def test_app_json_names_its_add_ons_buildpack_and_formation() -> None:
    manifest = app_manifest()
    assert manifest["name"] == "vidfleet" and manifest["description"]
    plans = {addon["plan"].split(":")[0] for addon in manifest["addons"]}
    assert {"heroku-postgresql", "heroku-redis"} <= plans
    assert [pack["url"] for pack in manifest["buildpacks"]] == ["heroku/python"]
    # The formation runs the Procfile's long-lived processes; release is a phase.
    assert set(manifest["formation"]) == PROCESS_TYPES - {"release"}
    assert all(entry["quantity"] >= 1 for entry in manifest["formation"].values())
    assert manifest["formation"]["scheduler"]["quantity"] == 1  # one active holder
    # Heroku runs the Procfile's release line before each deploy goes live.
    assert words(procfile()["release"]) == ["python", "-m", "db.migrate"]


def test_app_json_generates_the_secrets_and_names_only_real_settings() -> None:
    env = app_manifest()["env"]
    for name in ("VIDFLEET_ADMIN_TOKEN", "VIDFLEET_SECRET_KEY"):
        assert env[name]["generator"] == "secret", name
    assert set(env) <= setting_names() | procfile_variables()
    # The add-ons set these two.
    assert not {"DATABASE_URL", "REDIS_URL"} & set(env)
    assert all(entry["description"] for entry in env.values())


def test_the_python_buildpack_finds_what_to_install() -> None:
    # heroku/python installs from requirements.txt: this one installs the project.
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["."]
