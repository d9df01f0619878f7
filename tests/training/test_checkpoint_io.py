import io
import pickle
from pathlib import Path

import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.classifier import build_classifier
from training.config import TrainConfig
from training.data import ImageDataset
from training.sample import generate, shard_generator
from training.train import TrainResult, TrainState, train


def _save(result: TrainResult, data: ImageDataset, **kwargs: object) -> bytes:
    cfg = TrainConfig(epochs=5, seed=3)
    return save_checkpoint(
        result.model, cfg, class_names=data.class_names, image_shape=data.image_shape, **kwargs
    )


def test_checkpoint_roundtrip_restores_identical_samples(trained: TrainResult, digits: ImageDataset) -> None:
    blob = _save(trained, digits, metrics={"heldout_neg_elbo": 25.0, "per_class": {"0": 1.0}})
    loaded = load_checkpoint(blob)
    labels = torch.arange(10).repeat(20)
    before = generate(trained.model, labels, generator=shard_generator(4, 0))
    after = generate(loaded.model, labels, generator=shard_generator(4, 0))
    assert before.tobytes() == after.tobytes()
    assert loaded.cfg == TrainConfig(epochs=5, seed=3)
    assert loaded.class_names == digits.class_names and loaded.image_shape == (1, 8, 8)
    assert loaded.metrics == {"heldout_neg_elbo": 25.0, "per_class": {"0": 1.0}}
    assert loaded.classifier is None and loaded.train_state is None and not loaded.model.training


def test_checkpoint_roundtrip_restores_classifier(trained: TrainResult, digits: ImageDataset) -> None:
    torch.manual_seed(0)
    classifier = build_classifier(64, 10)
    loaded = load_checkpoint(_save(trained, digits, classifier=classifier))
    x = torch.rand(5, 64)
    assert torch.equal(classifier(x), loaded.classifier(x))


def test_checkpoint_train_state_resumes_like_an_uninterrupted_run(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=3, seed=4)
    states: list[TrainState] = []
    full = train(cfg, small_digits, on_checkpoint=states.append)
    blob = save_checkpoint(
        full.model, cfg, class_names=small_digits.class_names, image_shape=(1, 8, 8), train_state=states[0]
    )
    loaded = load_checkpoint(blob)
    resumed = train(loaded.cfg, small_digits, resume_from=loaded.train_state)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])


def test_load_checkpoint_refuses_malicious_pickle(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (open, (str(sentinel), "w"))

    buffer = io.BytesIO()
    torch.save({"config": {}, "model_state": Exploit()}, buffer)
    for payload in (buffer.getvalue(), pickle.dumps(Exploit(), protocol=2)):
        with pytest.raises(CheckpointError, match="could not read checkpoint"):
            load_checkpoint(payload)
    assert not sentinel.exists()


@pytest.mark.parametrize("blob", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_raises_checkpoint_error(blob: bytes) -> None:
    with pytest.raises(CheckpointError):
        load_checkpoint(blob)


def test_truncated_checkpoint_raises_checkpoint_error(trained: TrainResult, digits: ImageDataset) -> None:
    blob = _save(trained, digits)
    with pytest.raises(CheckpointError):
        load_checkpoint(blob[: len(blob) // 2])


def test_checkpoint_missing_keys_raises_checkpoint_error() -> None:
    buffer = io.BytesIO()
    torch.save({"format_version": 1, "config": {}}, buffer)
    with pytest.raises(CheckpointError, match="missing keys model_state, class_names, image_shape"):
        load_checkpoint(buffer.getvalue())


def test_checkpoint_with_mismatched_weights_raises_checkpoint_error(
    trained: TrainResult, digits: ImageDataset
) -> None:
    blob = save_checkpoint(
        trained.model, TrainConfig(latent_dim=3), class_names=digits.class_names, image_shape=(1, 8, 8)
    )
    with pytest.raises(CheckpointError, match="invalid checkpoint"):
        load_checkpoint(blob)


def test_save_checkpoint_rejects_metrics_that_would_not_load(
    trained: TrainResult, digits: ImageDataset
) -> None:
    with pytest.raises(ValueError, match="metrics"):
        _save(trained, digits, metrics={"when": object()})
