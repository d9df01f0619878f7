"""The worker's start-up warm-up: runs off the claim path, touches no random stream, can be turned off."""

from __future__ import annotations

from pathlib import Path

import torch

from synthjobs.settings import Settings
from worker.warmup import start_warm_up, warm_up


def test_warm_up_leaves_the_global_random_stream_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    seconds = warm_up()
    assert torch.equal(torch.rand(4), expected)
    assert set(seconds) == {"adam", "digits"} and all(v >= 0 for v in seconds.values())


def test_warm_up_runs_in_a_daemon_thread_and_can_be_off(tmp_path: Path) -> None:
    thread = start_warm_up(Settings(home=tmp_path / "home"))
    assert thread is not None and thread.daemon and thread.name == "warm-up"
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert start_warm_up(Settings(home=tmp_path / "home", worker_warm_up=False)) is None


def test_warm_up_builds_the_s3_client_that_the_first_shard_then_reuses(
    s3_endpoint: str, s3_bucket: str
) -> None:
    from synthjobs.storage import open_storage
    from synthjobs.storage.s3 import S3Storage, _service_client

    settings = Settings(storage_url=f"s3://{s3_bucket}/warm", s3_endpoint_url=s3_endpoint)
    _service_client.cache_clear()
    seconds = warm_up(settings)
    assert set(seconds) == {"storage", "adam", "digits"} and _service_client.cache_info().currsize == 1
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage) and _service_client.cache_info().hits >= 1
