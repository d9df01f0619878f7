import dataclasses

import pytest
import torch

from training.config import TrainConfig
from training.data import ImageDataset
from training.train import kl_weight, train


def test_kl_weight_ramps_linearly_from_zero_to_beta() -> None:
    cfg = TrainConfig(beta=2.0, kl_warmup_epochs=4)
    assert [kl_weight(cfg, e) for e in range(1, 8)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_no_warmup_uses_beta_from_the_first_epoch() -> None:
    cfg = TrainConfig(beta=0.7)
    assert [kl_weight(cfg, e) for e in (1, 2, 30)] == [0.7, 0.7, 0.7]
    assert kl_weight(TrainConfig(beta=1.0, kl_warmup_epochs=1), 1) == 0.0
    assert kl_weight(TrainConfig(beta=1.0, kl_warmup_epochs=1), 2) == 1.0


def test_training_applies_the_schedule(small_digits: ImageDataset) -> None:
    # Epoch 1 of a warm-up is pure reconstruction: the same weights as a beta = 0 run.
    warm = train(TrainConfig(epochs=1, seed=1, kl_warmup_epochs=3), small_digits)
    recon_only = train(TrainConfig(epochs=1, seed=1, beta=0.0), small_digits)
    plain = train(TrainConfig(epochs=1, seed=1), small_digits)
    state = warm.model.state_dict()
    assert all(torch.equal(v, recon_only.model.state_dict()[k]) for k, v in state.items())
    assert any(not torch.equal(v, plain.model.state_dict()[k]) for k, v in state.items())
    # The held-out figure is always the beta = 1 ELBO, so warm-up runs stay comparable.
    assert warm.final.heldout_neg_elbo == pytest.approx(recon_only.final.heldout_neg_elbo)


def test_warmup_resumes_on_schedule(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=3, seed=2, kl_warmup_epochs=2)
    states = []
    full = train(cfg, small_digits, on_checkpoint=states.append)
    resumed = train(dataclasses.replace(cfg), small_digits, resume_from=states[0])
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in full.model.state_dict().items())
