"""Cache entries of the evaluation classifier: bit-identical round trip, and never trusted when wrong."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training.classifier_cache import CacheEntryInvalid, ClassifierKey, decode, encode
from training.data import ImageDataset
from training.evaluate import evaluation_classifier


@pytest.fixture(scope="module")
def key(small_digits: ImageDataset) -> ClassifierKey:
    return ClassifierKey(
        fingerprint="f" * 64, seed=7, image_shape=small_digits.image_shape, num_classes=10, device_type="cpu"
    )


@pytest.fixture(scope="module")
def trained(small_digits: ImageDataset) -> torch.nn.Module:
    return evaluation_classifier(small_digits, seed=7)


def test_an_entry_round_trips_to_the_same_weights_and_predictions(
    key: ClassifierKey, trained: torch.nn.Module, small_digits: ImageDataset
) -> None:
    loaded = decode(encode(trained, key), key)
    assert not loaded.training
    assert loaded.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in trained.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded(small_digits.test_x), trained(small_digits.test_x))


def test_the_same_inputs_give_the_same_entry_bytes(key: ClassifierKey, trained: torch.nn.Module) -> None:
    assert encode(trained, key) == encode(trained, key)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-10],  # truncated
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # one bit flipped
        lambda b: b"not an entry at all",
        lambda b: b"",
    ],
    ids=["truncated", "bit-flip", "garbage", "empty"],
)
def test_a_corrupt_entry_is_refused(key: ClassifierKey, trained: torch.nn.Module, damage) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CacheEntryInvalid):
        decode(damage(encode(trained, key)), key)


@pytest.mark.parametrize(
    "change",
    [
        {"fingerprint": "e" * 64},
        {"seed": 8},
        {"device_type": "cuda"},
        {"classifier_recipe": 99},
        {"split_recipe": 99},
        {"torch_version": "0.0"},
    ],
)
def test_an_entry_for_another_key_is_refused(
    key: ClassifierKey, trained: torch.nn.Module, change: dict
) -> None:
    other = dataclasses.replace(key, **change)
    assert other.digest() != key.digest()
    with pytest.raises(CacheEntryInvalid, match="another key"):
        decode(encode(trained, key), other)


def test_a_state_that_does_not_fit_the_recipe_is_refused(
    key: ClassifierKey, trained: torch.nn.Module
) -> None:
    wrong = dataclasses.replace(key, num_classes=3)  # the key matches what is stored, the weights do not
    with pytest.raises(CacheEntryInvalid, match="does not fit"):
        decode(encode(trained, wrong), wrong)
