"""The API's torch-free parameter formula (synthjobs.rules.model_budget) against the model training builds."""

from __future__ import annotations

import pytest

from synthjobs.rules import model_budget
from training.config import TrainConfig
from training.model import build_model, resolve_architecture


@pytest.mark.parametrize(
    ("image_shape", "classes", "latent", "hidden", "conditioning", "architecture"),
    [
        ((1, 8, 8), 10, 8, 256, "concat", "auto"),  # digits: auto is the MLP
        ((1, 8, 8), 10, 8, 256, "additive", "mlp"),
        ((1, 28, 28), 10, 16, 512, "concat", "auto"),  # MNIST: auto is conv
        ((1, 28, 28), 10, 16, 512, "additive", "conv"),
        ((3, 32, 32), 10, 32, 64, "concat", "conv"),
        ((3, 32, 32), 100, 4, 128, "additive", "mlp"),
        ((3, 20, 12), 3, 2, 7, "concat", "auto"),  # 12 < 16: auto is the MLP
        ((1, 16, 24), 2, 3, 5, "additive", "auto"),  # conv with H != W
    ],
)
def test_the_pure_parameter_count_equals_the_built_models(
    image_shape: tuple[int, int, int],
    classes: int,
    latent: int,
    hidden: int,
    conditioning: str,
    architecture: str,
) -> None:
    cfg = TrainConfig(
        latent_dim=latent, hidden_dim=hidden, conditioning=conditioning, architecture=architecture
    )
    c, h, w = image_shape
    model = build_model(cfg, c * h * w, classes, image_shape=image_shape)
    expected = sum(p.numel() for p in model.parameters())
    figures = {"latent_dim": latent, "hidden_dim": hidden, "conditioning": conditioning}
    counted = model_budget.parameter_count(image_shape, classes, **figures, architecture=architecture)
    assert counted == expected
    assert model_budget.resolve_architecture(architecture, image_shape) == resolve_architecture(
        architecture, image_shape
    )


def test_the_known_datasets_table_matches_the_loaders_shapes(digits) -> None:
    assert model_budget.KNOWN_DATASETS["digits"] == (digits.image_shape, digits.num_classes)
    assert set(model_budget.KNOWN_DATASETS) == {"digits", "MNIST", "FashionMNIST", "CIFAR10"}


def test_the_issue_model_is_refused_with_its_figure() -> None:
    hyper = {"hidden_dim": 8192, "architecture": "mlp", "batch_size": 1}
    with pytest.raises(model_budget.InvalidRequest) as refused:
        model_budget.check_model_budget(
            (1, 1024, 1024), 10, hyper, max_parameters=200_000_000, max_activation_bytes=1 << 40
        )
    assert refused.value.loc == ("hyperparameters", "hidden_dim")
    assert "model would have 1.7e10 parameters (68.7 GB" in str(refused.value)
    assert "limit is 2e8" in str(refused.value)
