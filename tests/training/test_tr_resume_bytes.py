import io

import pytest
import torch

from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from training.classifier import build_classifier
from training.config import TrainConfig
from training.data import ImageDataset, load_digits_dataset
from training.sample import generate, shard_generator
from training.train import TrainState, train


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("conditioning", ["concat", "additive"])
def test_run_resumed_from_bytes_ends_with_the_uninterrupted_weights(
    small_digits: ImageDataset, conditioning: str
) -> None:
    cfg = TrainConfig(epochs=4, seed=6, conditioning=conditioning, checkpoint_every=2)
    saved: list[bytes] = []

    def on_checkpoint(state: TrainState) -> None:
        saved.append(
            save_train_state(
                state, cfg, image_shape=small_digits.image_shape, class_names=small_digits.class_names
            )
        )

    full = train(cfg, small_digits, on_checkpoint=on_checkpoint)
    state, loaded_cfg = load_train_state(saved[0])
    assert loaded_cfg == cfg and state.epoch == 2 and len(state.history) == 2
    epochs: list[int] = []
    resumed = train(loaded_cfg, small_digits, resume_from=state, on_epoch=lambda m: epochs.append(m.epoch))
    assert epochs == [3, 4]
    assert _same_weights(full.model.state_dict(), resumed.model.state_dict())
    assert [m.heldout_neg_elbo for m in resumed.history] == [m.heldout_neg_elbo for m in full.history]


def test_conv_run_resumed_from_bytes_matches_too() -> None:
    full28 = load_digits_dataset(size=16)
    data = ImageDataset(
        full28.train_x[:96],
        full28.train_y[:96],
        full28.test_x[:32],
        full28.test_y[:32],
        full28.image_shape,
        full28.class_names,
        val_x=full28.val_x[:32],
        val_y=full28.val_y[:32],
    )
    cfg = TrainConfig(epochs=2, seed=1, hidden_dim=32, batch_size=32)
    saved: list[bytes] = []
    full = train(
        cfg,
        data,
        on_checkpoint=lambda s: saved.append(
            save_train_state(s, cfg, image_shape=data.image_shape, class_names=data.class_names)
        ),
    )
    state, loaded_cfg = load_train_state(saved[0])
    resumed = train(loaded_cfg, data, resume_from=state)
    assert full.model.architecture == "conv"
    assert _same_weights(full.model.state_dict(), resumed.model.state_dict())
    # The same bytes read as a model checkpoint give the model at that epoch, as a conv body.
    at_epoch_1 = load_checkpoint(saved[0])
    assert at_epoch_1.model.architecture == "conv" and at_epoch_1.train_state is not None


def test_load_train_state_refuses_a_checkpoint_without_state(trained, digits: ImageDataset) -> None:
    blob = save_checkpoint(
        trained.model, TrainConfig(epochs=5, seed=3), class_names=digits.class_names, image_shape=(1, 8, 8)
    )
    with pytest.raises(CheckpointError, match="holds no training state"):
        load_train_state(blob)


def test_load_train_state_refuses_corrupt_bytes_and_mismatched_weights(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=1, hidden_dim=16)
    states: list[TrainState] = []
    train(cfg, small_digits, on_checkpoint=states.append)
    blob = save_train_state(states[0], cfg, image_shape=(1, 8, 8), class_names=small_digits.class_names)
    for bad in (b"", blob[: len(blob) // 2], b"garbage"):
        with pytest.raises(CheckpointError):
            load_train_state(bad)
    wrong_cfg = save_train_state(
        states[0],
        TrainConfig(epochs=1, hidden_dim=17),
        image_shape=(1, 8, 8),
        class_names=small_digits.class_names,
    )
    with pytest.raises(CheckpointError, match="invalid checkpoint"):
        load_train_state(wrong_cfg)
    too_many_epochs = TrainState(**{**states[0].__dict__, "epoch": 3})
    blob = save_train_state(too_many_epochs, cfg, image_shape=(1, 8, 8), class_names=small_digits.class_names)
    with pytest.raises(CheckpointError, match="epoch 3 outside 0..1"):
        load_train_state(blob)


def test_conv_checkpoint_rebuilds_the_conv_body_and_cnn_classifier() -> None:
    shape = (3, 32, 32)
    cfg = TrainConfig(hidden_dim=32)  # "auto" -> conv for 32x32
    torch.manual_seed(0)
    from training.model import build_model

    model = build_model(cfg, 3072, 4, image_shape=shape)
    classifier = build_classifier(shape, 4)
    blob = save_checkpoint(model, cfg, class_names=list("abcd"), image_shape=shape, classifier=classifier)
    loaded = load_checkpoint(blob)
    assert loaded.model.architecture == "conv" and loaded.classifier.architecture == "cnn"
    x = torch.rand(2, 3072)
    assert torch.equal(loaded.classifier(x), classifier.eval()(x))
    labels = torch.tensor([0, 3])
    before = generate(model, labels, generator=shard_generator(0, 0), image_shape=shape)
    assert before.tobytes() == generate(loaded.model, labels, generator=shard_generator(0, 0)).tobytes()


def test_version_1_checkpoints_still_load_as_mlp(trained, digits: ImageDataset) -> None:
    classifier = build_classifier(64, 10)
    payload = {
        "format_version": 1,
        "config": {
            k: v
            for k, v in TrainConfig(epochs=5, seed=3).to_dict().items()
            if k not in ("architecture", "kl_warmup_epochs", "amp")
        },
        "model_state": trained.model.state_dict(),
        "class_names": list(digits.class_names),
        "image_shape": [1, 8, 8],
        "metrics": {},
        "classifier_state": classifier.state_dict(),
        "train_state": None,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    loaded = load_checkpoint(buffer.getvalue())
    assert loaded.model.architecture == "mlp" and loaded.classifier.architecture == "mlp"
    assert _same_weights(loaded.model.state_dict(), trained.model.state_dict())
