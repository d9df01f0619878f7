"""Bulk sampling: shards as tasks, byte-identical reruns, recovery from a killed worker, formats."""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

import numpy as np
import pytest

from synthjobs.devtools import processes

pytestmark = pytest.mark.integration

FAST_RECOVERY = {
    "SYNTHJOBS_LEASE_SECONDS": "2",
    "SYNTHJOBS_RECONCILE_INTERVAL": "0.5",
    "SYNTHJOBS_REQUEUE_AFTER": "2",
    "SYNTHJOBS_PROGRESS_INTERVAL": "0.1",
}


def _succeeded(stack: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    try:
        return stack.client.wait(job_id, timeout=timeout, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _trained_model(stack: Any) -> str:
    body = {"dataset": "digits", "hyperparameters": {"epochs": 3}, "seed": 5}
    return str(_succeeded(stack, stack.client.submit_train(body)["id"])["result"]["model_id"])


def _manifest(stack: Any, job: dict[str, Any]) -> dict[str, Any]:
    path = stack.stored_path(job["result"]["manifest_uri"])
    return dict(json.loads(path.read_text()))


def _shard_digests(manifest: dict[str, Any]) -> list[tuple[int, str]]:
    return [(s["count"], s["sha256"]) for s in manifest["shards"]]


def test_same_request_twice_gives_byte_identical_shards_and_exact_counts(start_stack) -> None:
    stack = start_stack()
    model_id = _trained_model(stack)
    body = {
        "model": model_id,
        "total": 1003,
        "distribution": {"1": 0.5, "7": 0.3, "9": 0.2},
        "seed": 9,
        "shard_size": 100,
        "temperature": 0.8,
    }
    first = _succeeded(stack, stack.client.submit_sample(body)["id"])
    second = _succeeded(stack, stack.client.submit_sample(body)["id"])
    a, b = _manifest(stack, first), _manifest(stack, second)
    assert len(a["shards"]) == 11
    assert _shard_digests(a) == _shard_digests(b)
    assert a["requested_per_class"] == a["produced_per_class"] == [0, 501, 0, 0, 0, 0, 0, 301, 0, 201]
    assert a["quality"]["scored"] >= 1000 and a["quality"]["conditional_accuracy"] is not None
    assert [e["kind"] for e in stack.client.events(first["id"])].count("finalizing") == 1
    shards = stack.client.get(first["id"])["shards"]
    assert [s["sha256"] for s in shards] == [s["sha256"] for s in a["shards"]]


def test_tstr_quality_is_reported_next_to_trtr(start_stack) -> None:
    stack = start_stack()
    model_id = _trained_model(stack)
    job = _succeeded(
        stack, stack.client.submit_sample({"model": model_id, "per_class": 20, "quality": "tstr"})["id"]
    )
    quality = job["result"]["quality"]
    assert 0 < quality["tstr"] <= 1 and 0.9 < quality["trtr"] <= 1
    assert _manifest(stack, job)["quality"]["tstr"] == quality["tstr"]


def test_webdataset_shards_read_with_tarfile_and_pil(start_stack) -> None:
    from PIL import Image

    stack = start_stack()
    model_id = _trained_model(stack)
    job = _succeeded(
        stack,
        stack.client.submit_sample(
            {"model": model_id, "per_class": {"2": 7, "5": 4}, "format": "webdataset", "shard_size": 5}
        )["id"],
    )
    labels: list[int] = []
    for uri in job["result"]["output_uris"]:
        assert uri.endswith(".tar")
        with tarfile.open(stack.stored_path(uri)) as archive:
            members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]
        keys = sorted({name.rsplit(".", 1)[0] for name in members})
        for key in keys:
            image = Image.open(io.BytesIO(members[f"{key}.png"]))
            assert image.size == (8, 8) and image.mode == "L"
            labels.append(int(members[f"{key}.cls"]))
    assert sorted(labels) == [2] * 7 + [5] * 4


def test_killed_worker_mid_job_still_gives_the_undisturbed_manifest(
    start_stack, postgres_url, redis_url
) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=FAST_RECOVERY)
    model_id = _trained_model(stack)
    body = {"model": model_id, "per_class": 20_000, "seed": 4, "shard_size": 5_000}
    job = stack.client.submit_sample(body)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        written = [s for s in stack.client.get(job["id"])["shards"] if s["state"] == "DONE"]
        if len(written) >= 3:
            break
        time.sleep(0.05)
    assert 3 <= len(written) < 40, "the kill must land while shards are in flight"
    processes.kill(stack.workers[0])
    stack.start_worker()
    disturbed = _succeeded(stack, job["id"])

    undisturbed = _succeeded(stack, stack.client.submit_sample(body)["id"])
    a, b = _manifest(stack, disturbed), _manifest(stack, undisturbed)
    assert _shard_digests(a) == _shard_digests(b)
    assert a["produced_per_class"] == [20_000] * 10
    assert [e["kind"] for e in stack.client.events(job["id"])].count("finalizing") == 1


def test_each_npz_shard_holds_uint8_images_and_int64_labels(start_stack) -> None:
    stack = start_stack()
    model_id = _trained_model(stack)
    job = _succeeded(
        stack, stack.client.submit_sample({"model": model_id, "per_class": 13, "shard_size": 50})["id"]
    )
    counts = np.zeros(10, np.int64)
    for uri in job["result"]["output_uris"]:
        with np.load(stack.stored_path(uri)) as data:
            assert data["images"].dtype == np.uint8 and data["labels"].dtype == np.int64
            counts += np.bincount(data["labels"], minlength=10)
    assert counts.tolist() == [13] * 10


def test_shards_are_shuffled_by_default_and_in_class_order_with_shuffle_off(start_stack) -> None:
    stack = start_stack()
    model_id = _trained_model(stack)
    body = {"model": model_id, "per_class": 30, "shard_size": 100, "seed": 2}
    shuffled = _succeeded(stack, stack.client.submit_sample(body)["id"])
    ordered = _succeeded(stack, stack.client.submit_sample({**body, "shuffle": False})["id"])
    assert _manifest(stack, shuffled)["shuffle"] is True and _manifest(stack, ordered)["shuffle"] is False
    for job, is_sorted in ((shuffled, False), (ordered, True)):
        for key in job["result"]["output_uris"]:
            with np.load(stack.stored_path(key)) as data:
                assert bool(np.all(np.diff(data["labels"]) >= 0)) is is_sorted, key
    assert _shard_digests(_manifest(stack, shuffled)) != _shard_digests(_manifest(stack, ordered))


def test_cancel_stops_the_remaining_shards(start_stack) -> None:
    stack = start_stack()
    model_id = _trained_model(stack)
    job = stack.client.submit_sample({"model": model_id, "per_class": 20_000, "shard_size": 2_000})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [s for s in stack.client.get(job["id"])["shards"] if s["state"] == "DONE"]
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert stack.client.cancel(job["id"])["state"] == "CANCELLED"
    time.sleep(2)
    settled = [s["state"] for s in stack.client.get(job["id"])["shards"]]
    assert settled.count("DONE") < 100 and settled.count("PENDING") > 0
    time.sleep(1)
    assert [s["state"] for s in stack.client.get(job["id"])["shards"]] == settled, (
        "no shard runs after cancel"
    )
    assert stack.client.get(job["id"])["state"] == "CANCELLED"
