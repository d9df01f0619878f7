"""Deleting jobs in the ledger: the request, the mark, what usage counts, and what retention may expire."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from synthjobs.errors import DeletionRefused
from synthjobs.ledger import deletion, jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import model_id_for_job, register_model
from synthjobs.ledger.tables import Dataset, Job, JobKind, JobShard, JobState, utcnow
from synthjobs.storage.local import LocalStorage


def _sampling_job(url: str, shard_count: int = 3, tenant: str = "acme", reserved: int = 0) -> str:
    with session_scope(url) as session:
        job = jobs.create_job(session, JobKind.SAMPLE, {"counts": [shard_count]}, tenant=tenant)
        jobs.set_reserved_bytes(job, reserved)
        shards.create_shards(session, job.id, [[1]] * shard_count)
        return job.id


def _write_shard(url: str, job_id: str, index: int, size: int, worker: str = "w1") -> None:
    with session_scope(url) as session:
        assert shards.claim_shard(session, job_id, index, worker, 60, 5) is not None
        key = shards.shard_key(job_id, index, "npz")
        quality = {"scored": [0], "correct": [0]}
        shards.complete_shard(
            session, job_id, index, worker, key=key, sha256="0" * 64, size=size, seconds=0.1, quality=quality
        )


def test_usage_counts_shards_other_outputs_reservations_and_uploads_but_not_deleted_jobs(
    database_url: str,
) -> None:
    finished = _sampling_job(database_url, 2)
    _write_shard(database_url, finished, 0, 100)
    _write_shard(database_url, finished, 1, 50)
    running = _sampling_job(database_url, 2, reserved=10_000)
    _write_shard(database_url, running, 0, 7)  # inside its reservation: not counted twice
    _sampling_job(database_url, 1, tenant="globex", reserved=999_999)
    with session_scope(database_url) as session:
        jobs.finish_job(session, finished, JobState.SUCCEEDED)
        jobs.record_output_bytes(session, finished, 20)
        session.add(Dataset(tenant="acme", name="d", uri="file:///d", bytes=3, sha256="0" * 64, num_images=1))
    with session_scope(database_url) as session:
        assert deletion.tenant_usage(session, "acme") == 100 + 50 + 20 + 10_000 + 3
        jobs.finish_job(session, running, JobState.CANCELLED)
        assert deletion.tenant_usage(session, "acme") == 170 + 7 + 3, "a stopped job counts what it wrote"
        jobs.request_deletion(session, finished)
        assert jobs.mark_deleted(session, finished, 3, 170)
        assert deletion.tenant_usage(session, "acme") == 7 + 3


def test_deleting_a_running_job_cancels_it_and_a_redelivered_shard_does_nothing(database_url: str) -> None:
    job_id = _sampling_job(database_url, 3)
    _write_shard(database_url, job_id, 0, 10)
    with session_scope(database_url) as session:
        job = deletion.begin_deletion(session, job_id, tenant="acme")
        assert job.state == JobState.CANCELLED.value and job.delete_requested_at is not None
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 1, "w2", 60, 5) is None


def test_a_shard_still_being_written_keeps_the_deletion_pending_until_it_lands(
    database_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "store")
    job_id = _sampling_job(database_url, 2)
    _write_shard(database_url, job_id, 0, 4)
    storage.put_bytes(shards.shard_key(job_id, 0, "npz"), b"done")
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 1, "w2", 60, 5) is not None  # in flight
        deletion.begin_deletion(session, job_id, tenant="acme")
    with session_scope(database_url) as session:
        removed = deletion.finish_deletion(session, storage, job_id, grace_seconds=60)
        assert removed is not None and [k for k, _ in removed.objects] == [shards.shard_key(job_id, 0, "npz")]
        assert jobs.get_job(session, job_id).deleted_at is None, "shard 1 may still land"
        assert deletion.pending_deletions(session) == [job_id]
    storage.put_bytes(shards.shard_key(job_id, 1, "npz"), b"late")
    with session_scope(database_url) as session:
        shards.complete_shard(
            session, job_id, 1, "w2", key="k", sha256="0" * 64, size=4, seconds=0.1, quality={}
        )
    with session_scope(database_url) as session:
        deletion.finish_deletion(session, storage, job_id, grace_seconds=60)
        job = jobs.get_job(session, job_id)
        assert job.deleted_at is not None and job.result is not None and "left_behind" not in job.result
    assert storage.list_keys(f"jobs/{job_id}/") == []


def test_a_shard_whose_lease_just_lapsed_still_counts_as_a_writer_for_a_lease_more(
    database_url: str, tmp_path: Path
) -> None:
    """A renewal late by a moment (a busy database, a starved thread) does not stop the worker: it still
    uploads. Marking the job deleted in that moment let the shard land after `deleted_at`."""
    storage = LocalStorage(tmp_path / "store")
    job_id = _sampling_job(database_url, 1)
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 0, "w1", 60, 5) is not None
        deletion.begin_deletion(session, job_id, tenant="acme")
    lapsed = update(JobShard).where(JobShard.job_id == job_id)
    with session_scope(database_url) as session:
        session.execute(lapsed.values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(database_url) as session:
        deletion.finish_deletion(session, storage, job_id, grace_seconds=30)
        assert jobs.get_job(session, job_id).deleted_at is None, "its worker may still be uploading"
    with session_scope(database_url) as session:
        session.execute(lapsed.values(lease_expires_at=utcnow() - timedelta(seconds=31)))
    with session_scope(database_url) as session:
        deletion.finish_deletion(session, storage, job_id, grace_seconds=30)
        assert jobs.get_job(session, job_id).deleted_at is not None, "a lease past its grace: the worker died"


def test_cancel_leaves_the_written_shards_listed_in_the_result(database_url: str) -> None:
    job_id = _sampling_job(database_url, 3)
    _write_shard(database_url, job_id, 0, 11)
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 1, "w2", 60, 5) is not None
        jobs.cancel_job(session, job_id)
        shards.record_left_behind(session, job_id)
    with session_scope(database_url) as session:  # the shard in flight lands after the cancel
        shards.complete_shard(
            session,
            job_id,
            1,
            "w2",
            key=shards.shard_key(job_id, 1, "npz"),
            sha256="0" * 64,
            size=13,
            seconds=0.1,
            quality={},
        )
    with session_scope(database_url) as session:
        left = (jobs.get_job(session, job_id).result or {})["left_behind"]
    assert left["objects"] == [
        {"key": shards.shard_key(job_id, 0, "npz"), "bytes": 11},
        {"key": shards.shard_key(job_id, 1, "npz"), "bytes": 13},
    ]
    assert (left["count"], left["bytes"], left["still_writing"]) == (2, 24, 0)


def test_a_training_job_whose_model_is_registered_is_not_deleted_nor_expired(database_url: str) -> None:
    with session_scope(database_url) as session:
        job = jobs.create_job(session, JobKind.TRAIN, {}, tenant="acme")
        job_id = job.id
        session.flush()
        register_model(
            session,
            model_id=model_id_for_job(job_id),
            name="m",
            training_job_id=job_id,
            checkpoint_uri="file:///m.pt",
            hyperparameters={},
            metrics={},
            dataset={},
            tenant="acme",
        )
    with session_scope(database_url) as session:
        jobs.claim_job(session, job_id, "w", 60)
        jobs.finish_job(session, job_id, JobState.SUCCEEDED)
        session.execute(update(Job).values(finished_at=utcnow() - timedelta(days=400)))
    with session_scope(database_url) as session:
        with pytest.raises(DeletionRefused, match="m:1"):
            deletion.begin_deletion(session, job_id, tenant="acme")
        assert deletion.expired_jobs(session, retention_days=30) == []


def test_retention_picks_only_finished_jobs_older_than_the_limit(database_url: str) -> None:
    old, young, running = (_sampling_job(database_url, 1) for _ in range(3))
    for job_id in (old, young, running):
        _write_shard(database_url, job_id, 0, 1)
    with session_scope(database_url) as session:
        jobs.finish_job(session, old, JobState.SUCCEEDED)
        jobs.finish_job(session, young, JobState.SUCCEEDED)
        session.execute(update(Job).where(Job.id == old).values(finished_at=utcnow() - timedelta(days=31)))
    with session_scope(database_url) as session:
        assert deletion.expired_jobs(session, retention_days=30) == [old]


def test_listings_hide_deleted_jobs_unless_asked(database_url: str) -> None:
    kept, gone = _sampling_job(database_url, 1), _sampling_job(database_url, 1)
    with session_scope(database_url) as session:
        deletion.begin_deletion(session, gone, tenant="acme")
        assert jobs.mark_deleted(session, gone, 0, 0)
        assert not jobs.mark_deleted(session, gone, 0, 0), "marked once"
    with session_scope(database_url) as session:
        assert [j.id for j in jobs.list_jobs(session, tenant="acme")[0]] == [kept]
        assert {j.id for j in jobs.list_jobs(session, tenant="acme", include_deleted=True)[0]} == {kept, gone}
