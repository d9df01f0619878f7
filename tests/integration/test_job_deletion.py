"""Deleting jobs on the real stack: objects gone from S3 and from the local folder, retention, cancel."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, utcnow
from synthjobs.maintenance.reconcile import ReconcileReport, expire_outputs
from synthjobs.settings import Settings

pytestmark = pytest.mark.integration

FAST = {
    "SYNTHJOBS_LEASE_SECONDS": "2",
    "SYNTHJOBS_RECONCILE_INTERVAL": "0.5",
    "SYNTHJOBS_PROGRESS_INTERVAL": "0.1",
}


def _succeeded(stack: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    try:
        return stack.client.wait(job_id, timeout=timeout, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _trained_model(stack: Any) -> str:
    body = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 5}
    return str(_succeeded(stack, stack.client.submit_train(body)["id"])["result"]["model_id"])


def _ledger_url(stack: Any) -> str:
    return f"sqlite:///{Path(stack.env['SYNTHJOBS_HOME']).resolve() / 'synthjobs.db'}"


def _s3_keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _wait_until(check: Any, what: str, stack: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{stack.log_tail()}")


def test_deleted_sampling_job_leaves_no_object_in_s3_and_old_outputs_expire(
    start_stack, s3_endpoint: str, s3_bucket: str, s3_client
) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(storage_url=f"s3://{s3_bucket}/synth", s3_endpoint=s3_endpoint)
    model_id = _trained_model(stack)
    body = {"model": model_id, "per_class": 30, "shard_size": 100, "seed": 1}
    job = _succeeded(stack, stack.client.submit_sample(body)["id"])
    stored = _s3_keys(s3_client, s3_bucket, f"synth/jobs/{job['id']}/")
    assert len(stored) == 5, stored  # three shards, the manifest and the preview grid
    with session_scope(_ledger_url(stack)) as session:
        recorded = {j.kind: j.output_bytes for j in session.query(Job).all()}
    assert recorded["train"] > 0 and recorded["sample"] > 0, "workers record what the quota counts"

    deleted = stack.client.delete(job["id"])
    assert (deleted["deletion"], deleted["removed_objects"]) == ("done", 5)
    assert _s3_keys(s3_client, s3_bucket, f"synth/jobs/{job['id']}/") == []
    assert _s3_keys(s3_client, s3_bucket, f"synth/models/{model_id}/"), "the model's checkpoint stays"
    assert stack.client.get(job["id"])["deleted_at"] is not None
    assert job["id"] not in [j["id"] for j in stack.client.list()["items"]]

    old = _succeeded(stack, stack.client.submit_sample(body)["id"])
    with session_scope(_ledger_url(stack)) as session:
        session.execute(
            update(Job).where(Job.id == old["id"]).values(finished_at=utcnow() - timedelta(days=31))
        )
    settings = Settings(
        home=Path(stack.env["SYNTHJOBS_HOME"]),
        storage_url=f"s3://{s3_bucket}/synth",
        s3_endpoint_url=s3_endpoint,
        retention_days=30,
    )
    report = ReconcileReport()
    expire_outputs(settings, report)
    assert report.expired == [old["id"]], "only the old job expires; the model's training job stays"
    assert _s3_keys(s3_client, s3_bucket, f"synth/jobs/{old['id']}/") == []
    assert stack.client.get(old["id"])["deleted_at"] is not None


def test_cancel_lists_what_it_left_and_delete_of_a_running_job_removes_it_once_stopped(start_stack) -> None:
    stack = start_stack(extra_env=FAST)
    storage_root = Path(stack.env["SYNTHJOBS_HOME"]).resolve() / "storage"
    model_id = _trained_model(stack)
    body = {"model": model_id, "per_class": 20_000, "shard_size": 2_000}

    job = stack.client.submit_sample(body)
    _wait_until(
        lambda: sum(s["state"] == "DONE" for s in stack.client.get(job["id"])["shards"]) >= 2,
        "two shards",
        stack,
    )
    stack.client.cancel(job["id"])
    settled = _wait_until(
        lambda: (
            (j := stack.client.get(job["id"]))["result"]
            and j["result"]["left_behind"]["still_writing"] == 0
            and j
        ),
        "the cancelled job to stop writing",
        stack,
    )
    left = settled["result"]["left_behind"]
    written = {s["key"]: s["bytes"] for s in settled["shards"] if s["state"] == "DONE"}
    assert {o["key"]: o["bytes"] for o in left["objects"]} == written
    assert left["bytes"] == sum(written.values())
    assert all((storage_root / key).stat().st_size == size for key, size in written.items())
    assert stack.client.delete(job["id"])["deletion"] == "done"
    assert not (storage_root / "jobs" / job["id"]).exists()

    running = stack.client.submit_sample(body)
    _wait_until(
        lambda: any(s["state"] == "DONE" for s in stack.client.get(running["id"])["shards"]),
        "a shard",
        stack,
    )
    answer = stack.client.delete(running["id"])
    assert answer["state"] == "CANCELLED" and answer["deletion"] in ("done", "pending")
    _wait_until(lambda: stack.client.get(running["id"])["deleted_at"], "the deletion to complete", stack)
    # Marked deleted only once no shard was being written, so nothing can land after it.
    assert not list((storage_root / "jobs" / running["id"]).rglob("*.npz"))
    events = [e["kind"] for e in stack.client.events(running["id"])]
    assert events.index("cancelled") < events.index("delete_requested") < events.index("deleted")


def test_a_cancelled_training_job_lists_its_checkpoint_and_a_deleted_running_one_leaves_nothing(
    start_stack,
) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(extra_env={**FAST, "SYNTHJOBS_CHECKPOINT_MIN_INTERVAL": "0"})
    jobs_root = Path(stack.env["SYNTHJOBS_HOME"]).resolve() / "storage" / "jobs"
    body = {"dataset": "digits", "hyperparameters": {"epochs": 1000}, "seed": 3}

    def past_epoch_two(job_id: str) -> bool:
        return stack.client.get(job_id)["phase"].startswith(("epoch 3/", "epoch 4/", "epoch 5/"))

    cancelled = stack.client.submit_train(body)
    _wait_until(lambda: past_epoch_two(cancelled["id"]), "epoch 3", stack)
    stack.client.cancel(cancelled["id"])
    left = _wait_until(
        lambda: (stack.client.get(cancelled["id"])["result"] or {}).get("left_behind"),
        "the stopped worker to list what it left",
        stack,
    )
    keys = [o["key"] for o in left["objects"]]
    assert f"jobs/{cancelled['id']}/train-state/latest.json" in keys and left["bytes"] > 0
    assert stack.client.delete(cancelled["id"])["deletion"] == "done"
    assert not (jobs_root / cancelled["id"]).exists()

    running = stack.client.submit_train(body)
    _wait_until(lambda: past_epoch_two(running["id"]), "epoch 3", stack)
    answer = stack.client.delete(running["id"])
    assert answer["state"] == "CANCELLED"
    assert answer["deletion"] == "pending", "its worker may still write a checkpoint"
    _wait_until(lambda: stack.client.get(running["id"])["deleted_at"], "the deletion to complete", stack)
    assert not list((jobs_root / running["id"]).rglob("*.pt")), "the checkpoint flushed on stop went too"
