"""DP-SGD on request: the budget is met and recorded per epoch; overspending or no Opacus fail clearly."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from training.config import PrivacyConfig, TrainConfig
from training.data import ImageDataset
from training.dp import DPUnavailable, PrivacyBudgetExceeded
from training.train import train

pytest.importorskip("opacus", reason="DP-SGD needs the 'dp' extra (opacus); `make install` installs it")

SMALL_EPSILON = {"epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_dp_training_on_digits_records_epsilon_each_epoch_within_budget(digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=3, seed=2, privacy=SMALL_EPSILON)
    result = train(cfg, digits)
    spent = [m.epsilon for m in result.history]
    assert all(e is not None for e in spent)
    assert spent == sorted(spent) and 0 < spent[0] < spent[-1]  # the accountant only ever adds
    # The noise is calibrated so the whole run spends the target: close to it, never above it.
    assert 0.9 < spent[-1] <= 1.0 + 1e-3
    assert result.final.heldout_neg_elbo < result.history[0].heldout_neg_elbo + 5.0  # it trains, noisily


def test_dp_training_is_deterministic_and_differs_from_non_private(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=2, seed=4, privacy=SMALL_EPSILON)
    a, b = train(cfg, small_digits), train(cfg, small_digits)
    plain = train(dataclasses.replace(cfg, privacy=None), small_digits)
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, plain.model)
    assert all(m.epsilon is None for m in plain.history)


def test_dp_model_has_no_opacus_hooks_left(small_digits: ImageDataset) -> None:
    result = train(TrainConfig(epochs=1, privacy=SMALL_EPSILON), small_digits)
    names = list(result.model.state_dict())
    assert names == list(train(TrainConfig(epochs=1), small_digits).model.state_dict())
    assert not any(m._forward_hooks or m._backward_hooks for m in result.model.modules())


def test_budget_that_cannot_be_met_fails_with_the_figures(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=50, batch_size=300, privacy={"epsilon": 0.001, "delta": 1e-9})
    with pytest.raises(PrivacyBudgetExceeded, match=r"epsilon 0\.001 at delta 1e-09"):
        train(cfg, small_digits)


def test_overspent_budget_stops_training_at_that_epoch(
    small_digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import dp

    monkeypatch.setattr(dp.DPSetup, "epsilon_spent", lambda self: 5.0)
    epochs: list[int] = []
    with pytest.raises(PrivacyBudgetExceeded, match=r"epoch 1: epsilon spent 5\.0000 > target 1\.0"):
        train(
            TrainConfig(epochs=3, privacy=SMALL_EPSILON),
            small_digits,
            on_epoch=lambda m: epochs.append(m.epoch),
        )
    assert epochs == []  # no epoch past the budget is reported as done


def test_privacy_without_opacus_fails_with_a_readable_reason(
    small_digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "opacus" or m.startswith("opacus.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    with pytest.raises(DPUnavailable, match=r"pip install 'synthjobs\[dp\]'"):
        train(TrainConfig(epochs=1, privacy=SMALL_EPSILON), small_digits)


@pytest.mark.parametrize(
    "privacy, message",
    [
        ({"epsilon": 0}, "privacy.epsilon must be > 0"),
        ({"epsilon": 101}, "privacy.epsilon must be <= 100"),
        ({"epsilon": 1, "delta": 0.5}, "privacy.delta must be <="),
        ({"epsilon": 1, "max_grad_norm": float("nan")}, "privacy.max_grad_norm must be finite"),
        ({"epsilon": True}, "privacy.epsilon must be a number"),
        ({"epsilon": 1, "sigma": 2}, "unknown privacy keys: sigma"),
        ("high", "privacy must be an object"),
    ],
)
def test_privacy_config_is_validated(privacy: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(privacy=privacy)  # type: ignore[arg-type]


def test_privacy_config_round_trips_through_the_checkpoint_dict() -> None:
    cfg = TrainConfig(privacy={"epsilon": 10})
    assert cfg.privacy == PrivacyConfig(epsilon=10)
    assert cfg.to_dict()["privacy"] == {"epsilon": 10, "delta": 1e-5, "max_grad_norm": 1.0}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({"epochs": 3}).privacy is None  # checkpoints from before DP still load
