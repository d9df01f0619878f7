import pytest

from training.config import TrainConfig


def test_config_rejects_unknown_conditioning() -> None:
    with pytest.raises(ValueError, match="conditioning must be one of concat, additive, got 'x'"):
        TrainConfig(conditioning="x")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be >= 1"),
        ("latent_dim", -1, "latent_dim must be >= 1"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("learning_rate", 0.0, "learning_rate must be > 0"),
        ("beta", -0.1, "beta must be >= 0"),
        ("seed", -3, "seed must be >= 0"),
        ("checkpoint_every", True, "checkpoint_every must be an integer"),
        ("dataset", "mnist", "dataset must be one of digits"),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_config_dict_roundtrip_is_lossless() -> None:
    cfg = TrainConfig(conditioning="additive", latent_dim=4, learning_rate=3e-4, seed=7)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown TrainConfig keys: dropout, layers"):
        TrainConfig.from_dict({"epochs": 3, "layers": 2, "dropout": 0.1})


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3  # type: ignore[misc]
