"""The evaluation classifier cache: a second job on the same data reuses the first one's, per tenant.

The end-to-end case runs the worker's own task code in this process on a real PostgreSQL ledger and a real
storage folder (as test_wk_lease_takeover does); the others drive the cache on a storage folder alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from tests.support.worker_settings import worker_settings
from training.checkpoint import load_checkpoint
from training.data import ImageDataset, fingerprint, load_digits_dataset
from worker.pipelines import classifier_cache
from worker.pipelines.classifier_cache import cached_evaluation_classifier, classifier_key, entry_key

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small() -> ImageDataset:
    digits = load_digits_dataset()
    return ImageDataset(
        train_x=digits.train_x[:300],
        train_y=digits.train_y[:300],
        val_x=digits.val_x[:40],
        val_y=digits.val_y[:40],
        test_x=digits.test_x[:80],
        test_y=digits.test_y[:80],
        image_shape=digits.image_shape,
        class_names=digits.class_names,
    )


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the evaluation classifiers actually trained (not loaded from the cache)."""
    calls: list[int] = []
    real = classifier_cache.evaluation_classifier

    def counting(*args: Any, **kwargs: Any) -> torch.nn.Module:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier_cache, "evaluation_classifier", counting)
    return calls


def _get(storage: LocalStorage, tenant: str, data: ImageDataset, events: list | None = None) -> Any:
    record = (lambda *e: events.append(e)) if events is not None else None
    return cached_evaluation_classifier(
        storage, tenant, data, fingerprint(data), seed=4, device=CPU, event=record
    )


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_the_second_request_loads_the_stored_classifier(
    tmp_path: Path, small: ImageDataset, trainings: list[int]
) -> None:
    storage, events = LocalStorage(tmp_path / "store"), []
    first = _get(storage, "acme", small, events)
    second = _get(storage, "acme", small, events)
    assert len(trainings) == 1, "the second request trained the classifier again"
    assert [e[2]["cached"] for e in events] == [False, True] and {e[0] for e in events} == {"classifier"}
    assert _same_weights(first, second) and not second.training
    key = entry_key("acme", classifier_key(small, fingerprint(small), seed=4, device=CPU))
    assert key.startswith("cache/acme/classifiers/") and storage.list_keys("cache/") == [key]


def test_another_tenant_never_reads_the_entry(
    tmp_path: Path, small: ImageDataset, trainings: list[int]
) -> None:
    storage = LocalStorage(tmp_path / "store")
    _get(storage, "acme", small)
    _get(storage, "globex", small)
    assert len(trainings) == 2
    assert [k.split("/")[1] for k in storage.list_keys("cache/")] == ["acme", "globex"]


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"junk"], ids=["truncated", "junk"])
def test_a_corrupt_entry_is_retrained_and_overwritten(
    tmp_path: Path, small: ImageDataset, trainings: list[int], damage: Any
) -> None:
    storage, events = LocalStorage(tmp_path / "store"), []
    reference = _get(storage, "acme", small)
    (key,) = storage.list_keys("cache/")
    good = storage.get_bytes(key)
    storage.put_bytes(key, damage(good))
    again = _get(storage, "acme", small, events)
    assert len(trainings) == 2 and events[0][2]["cached"] is False and "ignored" in events[0][1]
    assert _same_weights(reference, again)
    assert storage.get_bytes(key) == good, "the corrupt entry was not replaced"


def test_an_entry_of_other_data_is_not_reused(
    tmp_path: Path, small: ImageDataset, trainings: list[int]
) -> None:
    storage = LocalStorage(tmp_path / "store")
    _get(storage, "acme", small)
    fewer = ImageDataset(
        train_x=small.train_x[:200],
        train_y=small.train_y[:200],
        val_x=small.val_x,
        val_y=small.val_y,
        test_x=small.test_x,
        test_y=small.test_y,
        image_shape=small.image_shape,
        class_names=small.class_names,
    )
    _get(storage, "acme", fewer)
    assert len(trainings) == 2 and len(storage.list_keys("cache/")) == 2


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str) -> Iterator[Settings]:
    yield from worker_settings(monkeypatch, tmp_path, postgres_url, TSTR_SAMPLES_PER_CLASS="50")


def test_a_second_training_job_on_the_same_data_reuses_the_classifier_with_identical_results(
    settings: Settings, trainings: list[int]
) -> None:
    from worker import tasks
    from worker.pipelines import train as train_pipeline

    url = settings.resolved_database_url()
    params = {
        "model_name": "cached-classifier",
        "dataset": {"kind": "builtin", "name": "digits"},
        "config": {"seed": 2, "epochs": 1, "hidden_dim": 32, "latent_dim": 4},
    }
    results, events = [], []
    for _ in range(2):
        with session_scope(url) as session:
            job_id = jobs.create_job(session, JobKind.TRAIN, params).id
        tasks.run_job(job_id, train_pipeline.run)
        with session_scope(url) as session:
            job = jobs.get_job(session, job_id)
            assert job.state == JobState.SUCCEEDED.value, job.error
            results.append(dict(job.result))
            events.append([e.data for e in jobs.list_events(session, job_id) if e.kind == "classifier"])
    assert len(trainings) == 1, "the second job trained the evaluation classifier again"
    assert [[e["cached"] for e in job_events] for job_events in events] == [[False], [True]]
    volatile = {"seconds_per_epoch"}
    first, second = ({k: v for k, v in r["metrics"].items() if k not in volatile} for r in results)
    assert first == second
    storage = LocalStorage(Path(settings.resolved_storage_url().removeprefix("file://")))
    classifiers = [
        load_checkpoint(storage.get_bytes(storage.key_of(r["checkpoint_uri"]))).classifier for r in results
    ]
    assert classifiers[0] is not None and classifiers[1] is not None
    assert _same_weights(classifiers[0], classifiers[1])
