"""A worker whose lease was taken over stops at its next batch and writes nothing: the new owner owns it.

These run the worker's own task code in this process on a real PostgreSQL ledger and a real storage folder;
the takeover is the SQL update the reconciler or another worker would make.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import update

from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import register_model
from synthjobs.ledger.tables import Job, JobKind, JobShard, JobState, ShardState, utcnow
from synthjobs.rules import sampling
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from tests.support.worker_settings import worker_settings
from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.model import build_model
from training.sample import decoder_batch

NEW_OWNER = "another-worker:1"
DIGITS = [str(i) for i in range(10)]


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str) -> Iterator[Settings]:
    """The worker's settings, from the environment as a worker process reads them; a short lease."""
    yield from worker_settings(
        monkeypatch,
        tmp_path,
        postgres_url,
        LEASE_SECONDS="0.6",  # renewed every 0.2 s
        PROGRESS_INTERVAL="0",
        CHECKPOINT_MIN_INTERVAL="3600",  # checkpoints wait for a stop (flush) or the last epoch
    )


def _storage(settings: Settings) -> LocalStorage:
    return LocalStorage(Path(settings.resolved_storage_url().removeprefix("file://")))


def _take_over_shard(url: str, job_id: str, index: int) -> None:
    with session_scope(url) as session:
        session.execute(
            update(JobShard)
            .where(JobShard.job_id == job_id, JobShard.index == index)
            .values(worker=NEW_OWNER, lease_expires_at=utcnow() + timedelta(seconds=600))
        )


def _take_over_job(url: str, job_id: str) -> None:
    with session_scope(url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(worker=NEW_OWNER, lease_expires_at=utcnow() + timedelta(seconds=600))
        )


def _register_untrained_model(settings: Settings) -> Any:
    """A CVAE big enough that a large shard takes many decoder batches (its weights do not matter here)."""
    cfg = TrainConfig(latent_dim=8, hidden_dim=512, architecture="mlp", epochs=1)
    torch.manual_seed(0)
    model = build_model(cfg, 28 * 28, 10, image_shape=(1, 28, 28))
    blob = save_checkpoint(model, cfg, class_names=DIGITS, image_shape=(1, 28, 28))
    model_id = str(uuid.uuid4())
    uri = _storage(settings).put_bytes(f"models/{model_id}/model.pt", blob)
    with session_scope(settings.resolved_database_url()) as session:
        row = register_model(
            session,
            model_id=model_id,
            name="takeover-test",
            training_job_id=None,
            checkpoint_uri=uri,
            hyperparameters={},
            metrics={},
            dataset={"class_names": DIGITS, "image_shape": [1, 28, 28]},
        )
        session.expunge(row)
        return row


def test_shard_taken_over_mid_generation_stops_without_writing_or_marking_it(settings: Settings) -> None:
    from worker import tasks
    from worker.pipelines import sample as sample_pipeline

    url = settings.resolved_database_url()
    model = _register_untrained_model(settings)
    request = {"model": model.id, "per_class": 20_000, "seed": 3, "shard_size": 200_000}
    with session_scope(url) as session:
        params = sampling.sample_params(request, model, settings)
        job, _ = shards.create_sampling_job(session, params, tenant="default")
        job_id = job.id
    with session_scope(url) as session:
        row = shards.claim_shard(session, job_id, 0, "first-worker:1", settings.lease_seconds, 5)
        assert row is not None
        session.expunge(row)

    # Count the decoder batches the first worker runs (the model is cached per worker process).
    loaded = sample_pipeline.load_model(settings, _storage(settings), model.id, torch.device("cpu"))
    batches, decode = [], loaded.model.sample
    total_batches = -(-200_000 // decoder_batch((1, 28, 28)))  # the generation recipe's batch

    def counting_sample(*args: Any, **kwargs: Any) -> torch.Tensor:
        batches.append(1)
        if len(batches) == 3:
            _take_over_shard(url, job_id, 0)  # the reconciler or another worker takes the shard over
        return decode(*args, **kwargs)

    loaded.model.sample = counting_sample  # type: ignore[method-assign]
    try:
        tasks._run_shard(row, params, settings, "first-worker:1")
        assert tasks.HANDOFF.drain(timeout=60)
    finally:
        del loaded.model.sample

    assert len(batches) < total_batches, "the first worker generated the whole shard after losing it"
    with session_scope(url) as session:
        shard = shards.list_shards(session, job_id)[0]
        assert (shard.state, shard.worker, shard.key) == (ShardState.RUNNING.value, NEW_OWNER, None)
        assert shard.attempts == 1 and shard.error is None
        assert jobs.get_job(session, job_id).state == JobState.RUNNING.value
    assert _storage(settings).list_keys(f"jobs/{job_id}") == []


def test_training_job_taken_over_stops_without_checkpointing_or_finishing(settings: Settings) -> None:
    from worker import tasks
    from worker.pipelines import train as train_pipeline

    url = settings.resolved_database_url()
    params = {
        "model_name": "takeover-train",
        "dataset": {"kind": "builtin", "name": "digits"},
        "config": {"seed": 1, "epochs": 300, "hidden_dim": 64},
        "max_runtime_seconds": 600,
    }
    with session_scope(url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, params).id

    def take_over_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope(url) as session:
                if any(e.kind == "epoch" for e in jobs.list_events(session, job_id)):
                    break
            time.sleep(0.05)
        _take_over_job(url, job_id)

    thief = threading.Thread(target=take_over_after_the_first_epoch, daemon=True)
    thief.start()
    started = time.monotonic()
    tasks.run_job(job_id, train_pipeline.run)
    thief.join(timeout=5)

    with session_scope(url) as session:
        job = jobs.get_job(session, job_id)
        assert (job.state, job.worker, job.result) == (JobState.RUNNING.value, NEW_OWNER, None)
        epochs = [e for e in jobs.list_events(session, job_id) if e.kind == "epoch"]
    assert len(epochs) < 300, f"trained to the end ({time.monotonic() - started:.0f}s) after the takeover"
    assert _storage(settings).list_keys(f"jobs/{job_id}") == [], "wrote a checkpoint for the new owner's job"
