"""A training epoch's bookkeeping in the worker: one transaction for progress and events, and checkpoints
that tell `train` whether to build the state snapshot at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from training.config import TrainConfig
from training.data import load_digits_dataset
from worker import context
from worker.context import JobContext
from worker.pipelines.train import Checkpoints


def test_progress_with_events_is_one_transaction(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=sqlite_url)
    with session_scope(sqlite_url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id
    transactions: list[str] = []
    real = context.in_transaction

    def counting(url: str, fn: Any, **kwargs: Any) -> Any:
        transactions.append(kwargs.get("what", ""))
        return real(url, fn, **kwargs)

    monkeypatch.setattr(context, "in_transaction", counting)
    ctx = JobContext(job_id, {}, settings, LocalStorage(tmp_path / "store"), torch.device("cpu"))
    ctx.progress(0.5, "epoch 1/2", events=[("epoch", "epoch 1/2: ...", {"epoch": 1})])
    ctx.progress(0.5, "epoch 1/2", events=[("epoch", "epoch 1/2 again", None)])  # never throttled
    assert len(transactions) == 2
    with session_scope(sqlite_url) as session:
        assert [e.kind for e in jobs.list_events(session, job_id)].count("epoch") == 2


def test_checkpoints_want_a_snapshot_only_when_they_would_store_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", checkpoint_min_interval=3600)
    ctx = JobContext("j" * 32, {}, settings, LocalStorage(tmp_path / "store"), torch.device("cpu"))
    checkpoints = Checkpoints(ctx, TrainConfig(epochs=3), load_digits_dataset(), "digits-v1")
    assert [checkpoints.wanted(e) for e in (1, 2, 3)] == [False, False, True]  # the last is always kept
    eager = Checkpoints(
        JobContext(
            "k" * 32, {}, Settings(home=tmp_path / "h2", checkpoint_min_interval=0), ctx.storage, ctx.device
        ),
        TrainConfig(epochs=3),
        load_digits_dataset(),
        "digits-v1",
    )
    assert [eager.wanted(e) for e in (1, 2, 3)] == [True, True, True]
