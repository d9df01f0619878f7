import dataclasses

import pytest
import torch

from training.config import TrainConfig
from training.data import ImageDataset
from training.train import EpochMetrics, TrainingDiverged, TrainResult, TrainState, train


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_short_training_lowers_heldout_loss(trained: TrainResult) -> None:
    first, last = trained.history[0], trained.final
    assert [m.epoch for m in trained.history] == list(range(1, 11))  # the fixture trains 10 epochs
    assert last.heldout_neg_elbo < first.heldout_neg_elbo - 2.0
    assert last.heldout_neg_elbo < 30.0  # nats per 8x8 image; an untrained model scores about 44
    assert not trained.stopped and not trained.model.training


def test_training_is_deterministic_for_a_seed(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=2, seed=11, conditioning="additive")
    a = train(cfg, small_digits)
    torch.manual_seed(999)  # global RNG state must not matter
    torch.rand(7)
    b = train(cfg, small_digits)
    c = train(dataclasses.replace(cfg, seed=12), small_digits)
    assert _same_weights(a.model, b.model)
    assert [m.heldout_neg_elbo for m in a.history] == [m.heldout_neg_elbo for m in b.history]
    assert not _same_weights(a.model, c.model)


def test_training_leaves_global_rng_untouched(small_digits: ImageDataset) -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train(TrainConfig(epochs=1), small_digits)
    assert torch.equal(torch.rand(3), expected)


def test_resume_from_checkpoint_state_matches_uninterrupted_run(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=4, seed=2, checkpoint_every=1)
    states: list[TrainState] = []
    full = train(cfg, small_digits, on_checkpoint=states.append)
    assert [s.epoch for s in states] == [1, 2, 3, 4]
    resumed_epochs: list[int] = []
    resumed = train(
        cfg, small_digits, resume_from=states[1], on_epoch=lambda m: resumed_epochs.append(m.epoch)
    )
    assert resumed_epochs == [3, 4]
    assert _same_weights(full.model, resumed.model)
    assert [m.heldout_neg_elbo for m in resumed.history] == [m.heldout_neg_elbo for m in full.history]


def test_checkpoint_state_is_a_snapshot_not_a_live_view(small_digits: ImageDataset) -> None:
    states: list[TrainState] = []
    result = train(TrainConfig(epochs=2), small_digits, on_checkpoint=states.append)
    first = states[0].model_state
    assert any(not torch.equal(first[k], v) for k, v in result.model.state_dict().items())


def test_checkpoints_follow_checkpoint_every_and_the_last_epoch(small_digits: ImageDataset) -> None:
    states: list[TrainState] = []
    train(TrainConfig(epochs=5, checkpoint_every=2), small_digits, on_checkpoint=states.append)
    assert [s.epoch for s in states] == [2, 4, 5]
    assert [h["epoch"] for h in states[-1].history] == [1, 2, 3, 4, 5]


def test_should_stop_ends_training_at_batch_boundary(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64)  # 320 images: 5 batches per epoch
    steps: list[tuple[int, int]] = []
    epochs: list[EpochMetrics] = []
    states: list[TrainState] = []
    result = train(
        cfg,
        small_digits,
        on_batch=lambda step, total: steps.append((step, total)),
        should_stop=lambda: len(steps) >= 7,
        on_epoch=epochs.append,
        on_checkpoint=states.append,
    )
    assert result.stopped
    assert steps[-1] == (7, 15) and len(steps) == 7
    assert [m.epoch for m in epochs] == [1] and [s.epoch for s in states] == [1]
    assert result.final.epoch == 2 and result.history == epochs


def test_on_batch_reports_steps_across_the_whole_run(small_digits: ImageDataset) -> None:
    steps: list[tuple[int, int]] = []
    train(TrainConfig(epochs=2, batch_size=100), small_digits, on_batch=lambda s, t: steps.append((s, t)))
    assert steps == [(i, 8) for i in range(1, 9)]  # ceil(320 / 100) = 4 batches per epoch


def test_nan_loss_raises_training_diverged(small_digits: ImageDataset) -> None:
    poisoned = small_digits.train_x.clone()
    poisoned[:, 0] = float("nan")
    data = dataclasses.replace(small_digits, train_x=poisoned)
    with pytest.raises(TrainingDiverged, match="training loss became nan at epoch 1, batch 1"):
        train(TrainConfig(epochs=1), data)


def test_resume_rejects_state_beyond_the_configured_epochs(small_digits: ImageDataset) -> None:
    states: list[TrainState] = []
    train(TrainConfig(epochs=2), small_digits, on_checkpoint=states.append)
    with pytest.raises(ValueError, match="cannot resume from epoch 2"):
        train(TrainConfig(epochs=1), small_digits, resume_from=states[-1])
