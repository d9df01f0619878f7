"""What `synthjobs worker` sets up before Celery starts: malloc thresholds and the embedded broker's poll."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

from synthjobs.broker.queue import EMBEDDED_POLL_SECONDS, celery_config
from synthjobs.malloc import MALLOC_ENV, tune_malloc
from synthjobs.settings import Settings


def test_embedded_broker_polls_every_tenth_of_a_second(tmp_path: os.PathLike[str]) -> None:
    settings = Settings(home=tmp_path)
    from kombu import Connection

    config = celery_config(settings)
    assert config["broker_url"].startswith("sqla+")
    assert "polling_interval" not in config["broker_transport_options"]  # create_engine would refuse it
    with Connection(config["broker_url"], transport_options=config["broker_transport_options"]) as conn:
        assert conn.transport.polling_interval == EMBEDDED_POLL_SECONDS <= 0.1


def test_redis_broker_gets_no_polling_interval(tmp_path: os.PathLike[str]) -> None:
    settings = Settings(home=tmp_path, broker_url="redis://127.0.0.1:6379/15")
    assert "polling_interval" not in celery_config(settings)["broker_transport_options"]


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"), reason="glibc")
def test_tune_malloc_sets_the_thresholds_here_and_for_children() -> None:
    script = (
        "import os, sys; from synthjobs.malloc import tune_malloc; ok = tune_malloc(); "
        "print(ok, os.environ['MALLOC_MMAP_THRESHOLD_'], os.environ['MALLOC_TRIM_THRESHOLD_'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "True",
        MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"],
        MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"],
    ]


def test_tune_malloc_keeps_values_a_user_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(16 << 20))
    tune_malloc()
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(16 << 20)
