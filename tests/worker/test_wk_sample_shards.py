"""A shard's order and its quality figures: shuffled deterministically by default, TSTR on its own data."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import register_model
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from training.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.model import build_model
from worker.pipelines import sample as sample_pipeline

CLASSES = [str(i) for i in range(10)]
SHAPE = (1, 8, 8)  # the built-in digits' shape, so TSTR can test on them
COUNTS = [30, 0, 25, 40, 10, 10, 10, 10, 10, 5]


@pytest.fixture(scope="module")
def loaded() -> LoadedCheckpoint:
    """An untrained CVAE: its weights matter neither to a shard's order nor to where TSTR's data is from."""
    cfg = TrainConfig(latent_dim=4, hidden_dim=32, architecture="mlp", epochs=1)
    torch.manual_seed(0)
    model = build_model(cfg, 64, 10, image_shape=SHAPE)
    return load_checkpoint(save_checkpoint(model, cfg, class_names=CLASSES, image_shape=SHAPE))


def _shard(loaded: LoadedCheckpoint, **params: object) -> tuple[np.ndarray, np.ndarray]:
    return sample_pipeline.generate_shard(
        loaded, {"seed": 7, "temperature": 1.0, **params}, 3, COUNTS, torch.device("cpu")
    )


def test_shuffled_shard_is_not_sorted_by_class_and_holds_the_same_counts(loaded: LoadedCheckpoint) -> None:
    images, labels = _shard(loaded, shuffle=True)
    assert not np.all(np.diff(labels) >= 0), "labels are still in class order"
    assert np.bincount(labels, minlength=10).tolist() == COUNTS
    assert len(images) == len(labels) == sum(COUNTS)


def test_unshuffled_shard_is_in_class_order(loaded: LoadedCheckpoint) -> None:
    _, labels = _shard(loaded, shuffle=False)
    assert np.all(np.diff(labels) >= 0) and np.bincount(labels, minlength=10).tolist() == COUNTS
    _, legacy = _shard(loaded)  # params of a job submitted before `shuffle` existed
    assert legacy.tolist() == labels.tolist()


def test_shuffled_shard_is_byte_identical_when_generated_again(loaded: LoadedCheckpoint) -> None:
    first, second = _shard(loaded, shuffle=True), _shard(loaded, shuffle=True)
    assert first[0].tobytes() == second[0].tobytes() and first[1].tobytes() == second[1].tobytes()
    other_seed = _shard(loaded, shuffle=True, seed=8)
    assert other_seed[1].tolist() != first[1].tolist()


def _model_with(url: str, dataset: dict[str, object]) -> str:
    with session_scope(url) as session:
        return register_model(
            session,
            model_id=str(uuid.uuid4()),
            name="quality-test",
            training_job_id=None,
            checkpoint_uri="file:///nowhere/model.pt",
            hyperparameters={},
            metrics={},
            dataset=dataset,
        ).id


def test_tstr_of_a_model_without_a_dataset_is_skipped_with_a_reason_not_run_on_digits(
    loaded: LoadedCheckpoint, sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, database_url=sqlite_url)
    model_id = _model_with(sqlite_url, {"class_names": CLASSES, "image_shape": list(SHAPE)})
    params = {"model_id": model_id, "seed": 1}
    figures = sample_pipeline._tstr(settings, LocalStorage(tmp_path), loaded, params, torch.device("cpu"))
    assert figures["tstr"] is None and figures["trtr"] is None
    assert "no dataset" in figures["tstr_skipped"]


def test_tstr_trains_on_the_configured_samples_per_class(
    loaded: LoadedCheckpoint, sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, database_url=sqlite_url, tstr_samples_per_class=12)
    spec = {"kind": "builtin", "name": "digits"}
    model_id = _model_with(sqlite_url, {"class_names": CLASSES, "image_shape": list(SHAPE), "spec": spec})
    params = {"model_id": model_id, "seed": 1}
    figures = sample_pipeline._tstr(settings, LocalStorage(tmp_path), loaded, params, torch.device("cpu"))
    assert figures["tstr_samples_per_class"] == 12
    assert 0 <= figures["tstr"] <= 1 and 0.5 < figures["trtr"] <= 1
