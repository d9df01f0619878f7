"""Training time of the new defaults against the old ones, side by side (ABAB, 2 rounds).

Run: `OMP_NUM_THREADS=1 python bench/defaults_train_time.py`. Prints only.
"""

import time

import torch

from training.config import TrainConfig
from training.data import load_digits_dataset
from training.train import train

torch.set_num_threads(1)
d = load_digits_dataset()
old = TrainConfig(latent_dim=8, beta=1.0, epochs=30, batch_size=64)
new = TrainConfig()
t = {"old": [], "new": []}
for _r in range(2):
    for name, cfg in (("old", old), ("new", new)):
        s = time.perf_counter()
        train(cfg, d)
        t[name].append(time.perf_counter() - s)
print(
    {k: [round(x, 2) for x in v] for k, v in t.items()},
    "ratio new/old",
    round(sum(t["new"]) / sum(t["old"]), 2),
)
