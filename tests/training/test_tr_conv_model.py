import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.data import ImageDataset, load_digits_dataset
from training.model import CVAE, build_model, resolve_architecture
from training.sample import generate, shard_generator
from training.train import train


def _conv(shape: tuple[int, int, int], conditioning: str, latent_dim: int = 4) -> CVAE:
    torch.manual_seed(0)
    cfg = TrainConfig(conditioning=conditioning, latent_dim=latent_dim, hidden_dim=32, architecture="conv")
    return build_model(cfg, int(np.prod(shape)), 10, image_shape=shape)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("conditioning", ["concat", "additive"])
def test_conv_model_maps_flat_images_to_flat_logits(shape: tuple[int, int, int], conditioning: str) -> None:
    model = _conv(shape, conditioning)
    d = int(np.prod(shape))
    logits, mu, log_var = model(torch.rand(5, d), torch.arange(5), generator=torch.Generator().manual_seed(0))
    assert logits.shape == (5, d) and mu.shape == (5, 4) and log_var.shape == (5, 4)
    assert model.architecture == "conv" and isinstance(model.features[1], torch.nn.Conv2d)
    assert model.features[1].in_channels == shape[0] and model.features[3].out_channels == 64
    assert model.decoder[1][-2].out_channels == shape[0]  # the last transposed conv emits one map per channel


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_conv_samples_have_the_image_shape_and_depend_on_the_label(shape: tuple[int, int, int]) -> None:
    model = _conv(shape, "concat")
    labels = torch.tensor([0, 3, 3, 9])
    images = generate(model, labels, generator=shard_generator(0, 0), image_shape=shape)
    c, h, w = shape
    assert images.dtype == np.uint8 and images.shape == ((4, h, w) if c == 1 else (4, h, w, c))
    z = torch.randn(2, 4)
    assert not torch.equal(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([1, 1])))


def test_conv_concat_joins_the_one_hot_to_the_flattened_features_and_to_z() -> None:
    model = _conv((1, 28, 28), "concat")
    assert model.encoder[0].in_features == 64 * 7 * 7 + 10
    assert model.decoder[0][0].in_features == 4 + 10
    x = torch.rand(3, 784)
    assert not torch.equal(
        model.encode(x, torch.zeros(3, dtype=torch.long))[0],
        model.encode(x, torch.ones(3, dtype=torch.long))[0],
    )


def test_conv_additive_keeps_the_course_label_projector_and_a_label_free_encoder() -> None:
    model = _conv((3, 32, 32), "additive")
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 4])
    shifted = z + model.label_projector(F.one_hot(y, 10).float())
    assert torch.equal(model.decode(z, y), model.decoder(shifted))
    assert isinstance(model.label_projector[1], torch.nn.ReLU) and model.label_projector[0].out_features == 4
    x = torch.rand(2, 3072)
    assert torch.equal(model.encode(x, torch.tensor([0, 0]))[0], model.encode(x, torch.tensor([5, 6]))[0])
    assert model.encoder[0].in_features == 64 * 8 * 8


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((1, 8, 8), "mlp"),
        ((1, 28, 28), "conv"),
        ((3, 32, 32), "conv"),
        ((1, 30, 30), "mlp"),
        ((1, 12, 12), "mlp"),
        ((3, 16, 20), "conv"),
        (None, "mlp"),
    ],
)
def test_auto_architecture_picks_conv_for_large_shapes_divisible_by_4(shape, expected: str) -> None:
    assert resolve_architecture("auto", shape) == expected
    assert resolve_architecture("mlp", shape) == "mlp"


def test_conv_refuses_shapes_it_cannot_halve_twice() -> None:
    with pytest.raises(
        ValueError, match="architecture 'conv' needs height and width divisible by 4, got 30x30"
    ):
        build_model(TrainConfig(architecture="conv"), 900, 10, image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="architecture 'conv' needs the image shape"):
        build_model(TrainConfig(architecture="conv"), 784, 10)


def test_mlp_state_dict_keys_are_unchanged_by_the_conv_option() -> None:
    # Version 1 checkpoints hold these keys; the MLP must still accept them.
    model = build_model(TrainConfig(), 64, 10, image_shape=(1, 8, 8))
    assert sorted(model.state_dict()) == sorted(
        [
            "encoder.0.weight",
            "encoder.0.bias",
            "to_mu.weight",
            "to_mu.bias",
            "to_log_var.weight",
            "to_log_var.bias",
        ]
        + ["decoder.0.0.weight", "decoder.0.0.bias", "decoder.1.weight", "decoder.1.bias"]
    )


@pytest.fixture(scope="module")
def digits28() -> ImageDataset:
    full = load_digits_dataset(size=28)
    return ImageDataset(
        full.train_x[:256],
        full.train_y[:256],
        full.test_x[:64],
        full.test_y[:64],
        full.image_shape,
        full.class_names,
        val_x=full.val_x[:64],
        val_y=full.val_y[:64],
    )


def test_upscaled_digits_train_the_conv_body_deterministically(digits28: ImageDataset) -> None:
    assert digits28.image_shape == (1, 28, 28) and float(digits28.train_x.max()) <= 1.0
    cfg = TrainConfig(epochs=2, seed=5, hidden_dim=64, conditioning="additive")
    a, b = train(cfg, digits28), train(cfg, digits28)
    assert a.model.architecture == "conv"
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.history[-1].heldout_neg_elbo < a.history[0].heldout_neg_elbo
