"""The service's commands start as an operator starts them: in production configuration with no home yet,
and from a folder whose `synthjobs/` is not the installed package (the folder above a clone).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from synthjobs.devtools import processes
from tests.conftest import S3_TEST_ENV

pytestmark = pytest.mark.integration


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHJOBS_")}
    env.update(S3_TEST_ENV)
    env.update({"SYNTHJOBS_HOME": str(home), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["SYNTHJOBS_QUEUE"] = f"gpu-{uuid.uuid4().hex[:8]}"
    env.update({f"SYNTHJOBS_{name.upper()}": value for name, value in settings.items()})
    return env


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.3)
    pytest.fail(f"no {text!r} (exit {process.poll()}):\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def production_env(
    tmp_path: Path, postgres_url: str, redis_url: str, s3_endpoint: str, s3_bucket: str
) -> dict[str, str]:
    """All three URLs set (PostgreSQL, Redis, S3) and SYNTHJOBS_HOME pointing where nothing exists yet."""
    return _env(
        tmp_path / "not" / "yet" / "home",
        database_url=postgres_url,
        broker_url=redis_url,
        storage_url=f"s3://{s3_bucket}/prod",
        s3_endpoint_url=s3_endpoint,
    )


def test_api_starts_in_production_configuration_without_an_existing_home(
    production_env: dict[str, str], tmp_path: Path
) -> None:
    port = processes.free_port()
    api = processes.start_api(production_env, port, tmp_path / "api.log")
    try:
        processes.wait_for_api(f"http://127.0.0.1:{port}", api, timeout=60)
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{(tmp_path / 'api.log').read_text(errors='replace')[-3000:]}")
    finally:
        processes.stop(api)


def test_beat_starts_in_production_configuration_without_an_existing_home(
    production_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "beat.log"
    with open(log, "ab") as output:
        beat = subprocess.Popen(
            [sys.executable, "-m", "synthjobs_client.cli", "beat"],
            env=production_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_line(log, "Sending due task", beat, timeout=60)
        assert beat.poll() is None, log.read_text()
    finally:
        processes.stop(beat)
    assert (Path(production_env["SYNTHJOBS_HOME"]) / "beat-schedule").parent.is_dir()


def test_worker_starts_from_a_folder_whose_synthjobs_is_not_the_package(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("synthjobs")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    cwd = tmp_path / "above-the-clone"
    (cwd / "synthjobs").mkdir(parents=True)
    (cwd / "synthjobs" / "__init__.py").write_text("")  # what `import synthjobs` must not find
    log = tmp_path / "worker.log"
    env = _env(tmp_path / "home")
    with open(log, "ab") as output:
        worker = subprocess.Popen(
            [str(script), "worker", "--name", f"shadow-{uuid.uuid4().hex[:6]}"],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_line(log, "synthjobs worker ready", worker, timeout=120)
    finally:
        processes.stop(worker)
