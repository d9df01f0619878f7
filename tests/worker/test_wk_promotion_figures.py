"""The promotion gate compares the very figures a training job stored: one conditional accuracy per model.

These run the worker's own task code in this process on a real PostgreSQL ledger and a real storage folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from synthjobs.ledger import jobs, registry
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from tests.support.worker_settings import worker_settings
from training.checkpoint import load_checkpoint
from training.evaluate import evaluation_classifier, figures_of, score_model
from worker.pipelines.datasets import load_training_data

SAMPLES_PER_CLASS = 20
DIGITS = {"kind": "builtin", "name": "digits"}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str) -> Iterator[Settings]:
    """The worker's settings, from the environment as a worker process reads them."""
    yield from worker_settings(
        monkeypatch,
        tmp_path,
        postgres_url,
        PROGRESS_INTERVAL="0",
        TSTR_SAMPLES_PER_CLASS=str(SAMPLES_PER_CLASS),
    )


def _train(settings: Settings, *, seed: int, epochs: int) -> dict[str, Any]:
    """Run one training job of model name `gate-test` to the end; return its result."""
    from worker import tasks
    from worker.pipelines import train as train_pipeline

    params = {
        "model_name": "gate-test",
        "dataset": DIGITS,
        "config": {"seed": seed, "epochs": epochs, "hidden_dim": 64},
        "max_runtime_seconds": 600,
    }
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, params).id
    tasks.run_job(job_id, train_pipeline.run)
    with session_scope(url) as session:
        job = jobs.get_job(session, job_id)
        assert job.state == JobState.SUCCEEDED.value, job.error
        return dict(job.result)


def _stored_metrics(settings: Settings, model_id: str) -> dict[str, Any]:
    with session_scope(settings.resolved_database_url()) as session:
        return dict(registry.get_model(session, model_id).metrics)


def _rescore(settings: Settings, model_id: str, *, seed: int) -> dict[str, float]:
    """The model's figures measured afresh by the evaluation API, with a training job's parameters."""
    storage = LocalStorage(Path(settings.resolved_storage_url().removeprefix("file://")))
    loaded = load_checkpoint(storage.get_bytes(f"models/{model_id}/checkpoint.pt"))
    data = load_training_data(DIGITS, settings, storage, tenant="default")
    classifier = evaluation_classifier(data, seed=seed)
    scores = score_model(
        loaded.model, data, seed=seed, samples_per_class=SAMPLES_PER_CLASS, classifier=classifier
    )
    return scores.figures()


def test_the_gate_uses_the_conditional_accuracy_the_training_job_stored(settings: Settings) -> None:
    torch.set_num_threads(1)
    first = _train(settings, seed=4, epochs=1)
    second = _train(settings, seed=4, epochs=2)  # same data and seed: scored alike, figures read back
    stored = {m["model_id"]: _stored_metrics(settings, m["model_id"]) for m in (first, second)}

    assert stored[first["model_id"]]["evaluation"]["samples_per_class"] == SAMPLES_PER_CLASS
    figures = second["promotion"]["figures"]
    assert figures["challenger"] == figures_of(stored[second["model_id"]])
    assert figures["champion"] == figures_of(stored[first["model_id"]])
    assert figures["champion"]["conditional_accuracy"] == stored[first["model_id"]]["conditional_accuracy"]
    # Reading them back is exact: measuring the stored model again gives the same numbers.
    assert _rescore(settings, first["model_id"], seed=4) == figures["champion"]


def test_a_champion_scored_otherwise_is_measured_again_with_the_challengers_parameters(
    settings: Settings,
) -> None:
    torch.set_num_threads(1)
    champion = _train(settings, seed=4, epochs=1)
    challenger = _train(settings, seed=5, epochs=1)  # another seed: the stored figures are not comparable

    figures = challenger["promotion"]["figures"]
    assert figures["challenger"] == figures_of(_stored_metrics(settings, challenger["model_id"]))
    assert figures["champion"] == _rescore(settings, champion["model_id"], seed=5)
    assert figures["champion"] != figures_of(_stored_metrics(settings, champion["model_id"]))
