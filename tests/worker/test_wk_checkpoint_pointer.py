"""The training pipeline's checkpoints: the object is stored before `latest.json` points at it.

A crash between the two writes must leave the previous checkpoint as "latest", never a pointer to an object
that is not there (or half there). These drive `worker.pipelines.train.Checkpoints` on a real storage folder
and real training states; no ledger is needed (nothing here writes an event).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from training.config import TrainConfig
from training.data import ImageDataset, load_dataset
from training.train import TrainState, train
from worker.context import JobContext
from worker.pipelines.train import Checkpoints

JOB_ID = "0123456789abcdef0123456789abcdef"
PREFIX = f"jobs/{JOB_ID}/train-state"


class RecordingStorage(LocalStorage):
    """A local folder that remembers the order of writes and deletes, and can fail one chosen put."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []
        self.fail_put: str | None = None

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        if key == self.fail_put:
            raise OSError(f"the worker died while writing {key}")
        self.calls.append(("put", key))
        return super().put_bytes(key, data, content_type)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        super().delete(key)


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cfg() -> TrainConfig:
    return TrainConfig(epochs=2, hidden_dim=16, latent_dim=2, seed=5)


@pytest.fixture(scope="module")
def states(cfg: TrainConfig, digits: ImageDataset) -> list[TrainState]:
    """The real states `train` offers after epochs 1 and 2."""
    offered: list[TrainState] = []
    train(cfg, digits, on_checkpoint=offered.append)
    assert [s.epoch for s in offered] == [1, 2]
    return offered


def _checkpoints(
    tmp_path: Path, cfg: TrainConfig, data: ImageDataset, **settings: Any
) -> tuple[Checkpoints, RecordingStorage]:
    storage = RecordingStorage(tmp_path / "store")
    options = {"home": tmp_path / "home", "checkpoint_min_interval": 0.0, **settings}
    ctx = JobContext(JOB_ID, {}, Settings(**options), storage, torch.device("cpu"))
    return Checkpoints(ctx, cfg, data, fingerprint="digits-v1"), storage


def test_checkpoint_object_is_stored_before_the_pointer_names_it(
    tmp_path: Path, cfg: TrainConfig, digits: ImageDataset, states: list[TrainState]
) -> None:
    checkpoints, storage = _checkpoints(tmp_path, cfg, digits)
    checkpoints.save(states[0])
    checkpoints.save(states[1])
    assert storage.calls == [
        ("put", f"{PREFIX}/epoch-00001.pt"),
        ("put", f"{PREFIX}/latest.json"),
        ("put", f"{PREFIX}/epoch-00002.pt"),
        ("put", f"{PREFIX}/latest.json"),
        ("delete", f"{PREFIX}/epoch-00001.pt"),  # only once nothing points at it
    ]
    pointer = json.loads(storage.get_bytes(f"{PREFIX}/latest.json"))
    assert pointer["key"] == f"{PREFIX}/epoch-00002.pt" and pointer["epoch"] == 2
    assert pointer["bytes"] == len(storage.get_bytes(pointer["key"]))


def test_a_crash_before_the_pointer_moves_resumes_from_the_previous_checkpoint(
    tmp_path: Path, cfg: TrainConfig, digits: ImageDataset, states: list[TrainState]
) -> None:
    checkpoints, storage = _checkpoints(tmp_path, cfg, digits)
    checkpoints.save(states[0])
    storage.fail_put = f"{PREFIX}/latest.json"
    with pytest.raises(OSError):
        checkpoints.save(states[1])

    rerun, _ = _checkpoints(tmp_path, cfg, digits)
    resumed = rerun.load_latest()
    assert resumed is not None and resumed.epoch == 1
    assert all(torch.equal(resumed.model_state[k], v) for k, v in states[0].model_state.items())


def test_states_inside_the_minimum_interval_wait_for_a_flush(
    tmp_path: Path, cfg: TrainConfig, digits: ImageDataset, states: list[TrainState]
) -> None:
    three = TrainConfig(**{**cfg.to_dict(), "epochs": 3})  # so epoch 2 is not the always-saved last one
    checkpoints, storage = _checkpoints(tmp_path, three, digits, checkpoint_min_interval=3600)
    checkpoints.save(states[0])
    checkpoints.save(states[1])
    assert storage.calls == [], "inside the interval nothing is written"
    checkpoints.flush()
    assert storage.calls == [("put", f"{PREFIX}/epoch-00002.pt"), ("put", f"{PREFIX}/latest.json")]
