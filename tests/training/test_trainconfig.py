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
        ("dataset", "", "dataset must be a non-empty string"),
        ("dataset", 3, "dataset must be a non-empty string"),
        ("dataset", "x" * 201, "dataset must be at most 200 characters, got 201"),
        ("architecture", "resnet", "architecture must be one of auto, mlp, conv, got 'resnet'"),
        ("kl_warmup_epochs", -1, "kl_warmup_epochs must be >= 0"),
        ("kl_warmup_epochs", 1.5, "kl_warmup_epochs must be an integer"),
        ("amp", 1, "amp must be true or false"),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_config_dict_roundtrip_is_lossless() -> None:
    cfg = TrainConfig(
        conditioning="additive",
        latent_dim=4,
        learning_rate=3e-4,
        seed=7,
        architecture="conv",
        kl_warmup_epochs=5,
        amp=True,
        dataset="my upload: cats vs dogs",
    )
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_config_dataset_is_a_free_form_label() -> None:
    assert TrainConfig(dataset="MNIST").dataset == "MNIST"
    assert TrainConfig(dataset="x" * 200).dataset == "x" * 200


def test_config_from_an_older_dict_takes_defaults_for_new_fields() -> None:
    new_fields = ("architecture", "kl_warmup_epochs", "amp")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in new_fields}
    cfg = TrainConfig.from_dict(old)
    assert cfg.architecture == "auto" and cfg.kl_warmup_epochs == 0 and cfg.amp is False


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown TrainConfig keys: dropout, layers"):
        TrainConfig.from_dict({"epochs": 3, "layers": 2, "dropout": 0.1})


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3  # type: ignore[misc]
