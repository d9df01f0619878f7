"""Per-epoch bookkeeping of the loop: `eval_every`, and snapshots built only when a checkpoint wants them."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from training.config import TrainConfig
from training.data import ImageDataset
from training.train import TrainState, train

train_module = sys.modules["training.train"]  # the module (`training.train` the attribute is the function)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_eval_every_measures_every_nth_and_the_last_epoch_and_changes_nothing_else(
    small_digits: ImageDataset,
) -> None:
    cfg = TrainConfig(epochs=5, seed=4)
    every = train(cfg, small_digits)
    sparse = train(dataclasses.replace(cfg, eval_every=3), small_digits)
    assert [m.heldout_neg_elbo is None for m in sparse.history] == [True, True, False, True, False]
    for dense_m, sparse_m in zip(every.history, sparse.history, strict=True):
        assert dense_m.train_loss == sparse_m.train_loss
        assert sparse_m.heldout_neg_elbo in (None, dense_m.heldout_neg_elbo)
    assert _same_weights(every.model, sparse.model)
    assert sparse.final.heldout_neg_elbo == every.final.heldout_neg_elbo


def test_eval_every_is_validated_and_left_out_of_the_record_at_its_default() -> None:
    assert "eval_every" not in TrainConfig().to_dict()
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    sparse = TrainConfig(eval_every=4)
    assert sparse.to_dict()["eval_every"] == 4 and TrainConfig.from_dict(sparse.to_dict()) == sparse
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="eval_every"):
            TrainConfig(eval_every=bad)


def test_a_snapshot_is_built_only_when_wanted(small_digits: ImageDataset, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    built: list[int] = []
    real = train_module._snapshot

    def counting(epoch: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(epoch)
        return real(epoch, *args, **kwargs)

    monkeypatch.setattr(train_module, "_snapshot", counting)
    asked: list[int] = []
    states: list[TrainState] = []

    def wanted(epoch: int) -> bool:
        asked.append(epoch)
        return epoch == 2

    train(TrainConfig(epochs=4), small_digits, on_checkpoint=states.append, checkpoint_wanted=wanted)
    assert asked == [1, 2, 3, 4] and built == [2] and [s.epoch for s in states] == [2]


def test_a_stop_after_a_skipped_snapshot_finishes_the_epoch_and_offers_it(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=6, seed=9)
    full = train(cfg, small_digits)
    batches = -(-len(small_digits.train_y) // cfg.batch_size)
    polls = {"n": 0}

    def stop_in_epoch_3() -> bool:
        polls["n"] += 1
        return polls["n"] > 2 * batches + 1  # from the second batch of epoch 3 on

    states: list[TrainState] = []
    stopped = train(
        cfg,
        small_digits,
        on_checkpoint=states.append,
        checkpoint_wanted=lambda epoch: False,
        should_stop=stop_in_epoch_3,
    )
    assert stopped.stopped and [s.epoch for s in states] == [3], "the completed epoch 3 was not offered"
    assert stopped.final.epoch == 3 and len(stopped.history) == 3
    resumed = train(cfg, small_digits, resume_from=states[0])
    assert _same_weights(full.model, resumed.model)
    assert [m.heldout_neg_elbo for m in resumed.history] == [m.heldout_neg_elbo for m in full.history]


def test_a_stop_with_every_snapshot_taken_ends_at_once(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=6, seed=9)
    batches = -(-len(small_digits.train_y) // cfg.batch_size)
    polls = {"n": 0}

    def stop_in_epoch_3() -> bool:
        polls["n"] += 1
        return polls["n"] > 2 * batches + 1

    states: list[TrainState] = []
    stopped = train(cfg, small_digits, on_checkpoint=states.append, should_stop=stop_in_epoch_3)
    assert stopped.stopped and [s.epoch for s in states] == [1, 2]
    assert stopped.final.epoch == 3 and len(stopped.history) == 2  # epoch 3 was interrupted


def test_long_epochs_are_always_snapshotted(small_digits: ImageDataset, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(train_module, "FINISH_EPOCH_SECONDS", 0.0)
    states: list[TrainState] = []
    train(TrainConfig(epochs=3), small_digits, on_checkpoint=states.append, checkpoint_wanted=lambda e: False)
    assert [s.epoch for s in states] == [1, 2, 3]
