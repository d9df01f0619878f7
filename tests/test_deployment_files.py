"""The deployment files: docker-compose.yml validates and wires one configuration into every process; the
Dockerfile keeps torch out of the API image.

`docker-compose config` validates without a Docker engine. When docker-compose is not installed the
validation test skips with the reason, unless SYNTHJOBS_REQUIRE_SERVICES=1 (as in CI): then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
REQUIRE_SERVICES = os.environ.get("SYNTHJOBS_REQUIRE_SERVICES") == "1"
SYNTHJOBS_PROCESSES = ("migrate", "api", "worker")


def _unavailable(reason: str) -> None:
    """Skip the test, or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (SYNTHJOBS_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def _compose_env() -> dict[str, str]:
    """The environment minus the variables the compose file reads, so their defaults are what is checked."""
    overrides = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "COMPOSE_FILE")
    return {key: value for key, value in os.environ.items() if key not in overrides}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML anchors and merge keys resolved, ${VAR:-default} left as written)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: cannot check the compose structure")
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "no services in the file"
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of KEY=VALUE."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _dockerfile_stages() -> dict[str, str]:
    """The Dockerfile's stages by lower-cased name: each one's instructions up to the next FROM."""
    lines = DOCKERFILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    starts = list(re.finditer(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", text, re.MULTILINE | re.IGNORECASE))
    assert starts, "no FROM line in the Dockerfile"
    stages = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        stages[(match.group(1) or f"#{index}").lower()] = text[match.start() : end]
    return stages


def _stages_of_target(stages: dict[str, str], target: str) -> set[str]:
    """The target's stage and every stage it is built FROM or copies files from, transitively."""
    seen: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        body = stages[name]
        parent = re.match(r"FROM\s+(\S+)", body, re.IGNORECASE)
        todo += [parent.group(1).lower()] if parent else []
        todo += [source.lower() for source in re.findall(r"--from=(\S+)", body)]
    return seen


def test_compose_file_validates() -> None:
    executable = shutil.which("docker-compose")
    if executable is None:
        _unavailable("docker-compose is not on PATH: cannot validate docker-compose.yml")
    result = subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=_compose_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stdout}{result.stderr}"


def test_api_and_worker_share_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = {name: _environment(services[name]) for name in SYNTHJOBS_PROCESSES}
    shared = {key: value for key, value in envs["api"].items() if key.startswith(("SYNTHJOBS_", "AWS_"))}
    for name, env in envs.items():
        mine = {key: value for key, value in env.items() if key.startswith(("SYNTHJOBS_", "AWS_"))}
        assert mine == shared, f"{name} is configured differently from api"
    assert shared["SYNTHJOBS_DATABASE_URL"].startswith("postgresql+psycopg://synthjobs:")
    assert shared["SYNTHJOBS_DATABASE_URL"].endswith("@postgres:5432/synthjobs")
    assert shared["SYNTHJOBS_BROKER_URL"] == "redis://redis:6379/0"
    assert shared["SYNTHJOBS_STORAGE_URL"] == "s3://synthjobs/data"
    assert shared["SYNTHJOBS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert shared["SYNTHJOBS_API_URL"] == "http://api:8000"
    # The storage credentials are MinIO's root credentials, read from the same variables.
    minio_env = _environment(services["minio"])
    assert shared["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert shared["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_compose_file_works_without_a_dotenv() -> None:
    """Every ${VAR} the file reads has a default, so `docker-compose config` needs no .env file."""
    text = COMPOSE_FILE.read_text()
    references = re.findall(r"(?<!\$)\$\{([^}]*)\}", text)
    assert references, "expected the credentials to come from ${VAR:-default} variables"
    without_default = [ref for ref in references if ":-" not in ref]
    assert not without_default, f"variables without a default: {without_default}"


def test_worker_reserves_nvidia_gpus(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia" and device.get("count") == "all" and "gpu" in device["capabilities"]
        for device in devices
    ), devices
    assert worker["build"]["target"] == "worker"
    assert compose["services"]["api"]["build"]["target"] == "api"


def test_redis_keeps_the_queue_durable_and_never_evicts(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"


def test_api_and_worker_start_after_migration_broker_and_bucket(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
        "minio-init": "service_completed_successfully",
    }
    for name in ("api", "worker"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == expected, f"{name}: {conditions}"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert " ".join(services["migrate"]["command"]) == "synthjobs migrate"
    assert services["migrate"]["build"] == services["api"]["build"], "migrate must run the api image"


def test_api_image_does_not_install_the_worker_extra() -> None:
    stages = _dockerfile_stages()
    assert {"api", "worker"} <= stages.keys(), f"Dockerfile targets: {sorted(stages)}"
    api_stages = _stages_of_target(stages, "api")
    api_text = "\n".join(stages[name] for name in api_stages)
    for forbidden in ("[worker]", "optional-dependencies", "torch"):
        assert forbidden not in api_text, f"the api target's stages {sorted(api_stages)} use {forbidden!r}"
    assert re.search(r"pip install [^\n]*\.", api_text), "the api target does not install the project"
    worker_text = "\n".join(stages[name] for name in _stages_of_target(stages, "worker"))
    assert ".[worker]" in worker_text, "the worker target does not install the worker extra"
    assert 'CMD ["synthjobs", "api", "--host", "0.0.0.0", "--port", "8000"]' in stages["api"]
    assert 'CMD ["synthjobs", "worker"]' in stages["worker"]
    assert "HEALTHCHECK" in stages["api"] and "/healthz" in stages["api"]
