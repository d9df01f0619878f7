import dataclasses

import torch

from training.config import TrainConfig
from training.data import ImageDataset
from training.train import _TrainSplit, train


def test_amp_is_ignored_on_cpu(small_digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=1, seed=8)
    a = train(cfg, small_digits)
    b = train(dataclasses.replace(cfg, amp=True), small_digits)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_cpu_training_split_is_used_in_place(small_digits: ImageDataset) -> None:
    split = _TrainSplit(small_digits.train_x, small_digits.train_y, torch.device("cpu"))
    assert split.resident and split.x.data_ptr() == small_digits.train_x.data_ptr()
    perm = split.permutation(torch.Generator().manual_seed(0))
    x, y = split.batch(perm[:5])
    assert torch.equal(x, small_digits.train_x[perm[:5]]) and torch.equal(y, small_digits.train_y[perm[:5]])
