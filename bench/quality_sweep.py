"""The retune sweep of the default digits model, scored on the validation split only.

`python bench/quality_sweep.py --grid NAME=v1,v2 ... [--seeds N]` trains every combination of the listed
TrainConfig fields (the others at their defaults) and prints, on **validation** (nothing here reads test):
conditional accuracy, TSTR and TRTR (same recipe and seed, `training.evaluate.tstr_both` / the evaluation
classifier recipe), TSTR - TRTR and DCR share in pixels (validation as the held-out set). The defaults
were chosen from this table; `bench/quality.py` then reports them on test. Prints only.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from training.classifier import accuracy, as_flat_pixels, train_classifier
from training.config import TrainConfig
from training.data import load_digits_dataset
from training.evaluate import (
    ClassCounts,
    Stream,
    evaluation_classifier,
    sample_per_class,
    stream_seed,
    tstr_both,
)
from training.privacy import equal_subsets, privacy_report
from training.train import train

FLOATS = {"beta", "learning_rate"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", nargs="+", default=[], help="FIELD=v1,v2 (TrainConfig fields)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--samples-per-class", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_digits_dataset()
    grid = {}
    for item in args.grid:
        name, values = item.split("=")
        grid[name] = [float(v) if name in FLOATS else int(v) for v in values.split(",")]
    val_x, val_y = data.choice_split()
    print(f"validation {len(val_y)} images; grid {grid}; seeds {args.seeds}")
    print(f"{'config':<60} {'acc':>6} {'TSTR':>6} {'TRTR':>6} {'gap':>6} {'DCRpx':>6} {'s':>6}")
    for combo in itertools.product(*grid.values()) if grid else [()]:
        over = dict(zip(grid, combo, strict=True))
        rows = []
        for seed in range(args.seeds):
            cfg = TrainConfig(seed=seed, **over)
            t0 = time.perf_counter()
            model = train(cfg, data).model
            secs = time.perf_counter() - t0
            clf = evaluation_classifier(data, seed=seed)
            images, labels = sample_per_class(model, args.samples_per_class, seed=seed)
            acc = ClassCounts.of(clf, images, labels, data.num_classes).overall or 0.0
            cseed = stream_seed(seed, Stream.TSTR)
            _, val_tstr = tstr_both(images, labels, data, seed=cseed)
            val_trtr = accuracy(train_classifier(data, seed=cseed), val_x, val_y)
            x = as_flat_pixels(images, data.image_shape)
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:2000]
            tr, ho = equal_subsets(data.train_x, val_x, seed=seed)
            dcr = privacy_report(x[pick], tr, ho)["dcr_share"]
            rows.append((acc, val_tstr, val_trtr, val_tstr - val_trtr, dcr, secs))
        m = np.mean(rows, axis=0)
        label = " ".join(f"{k}={v}" for k, v in over.items()) or "defaults"
        print(
            f"{label:<60} {100 * m[0]:6.2f} {100 * m[1]:6.2f} {100 * m[2]:6.2f} {100 * m[3]:+6.2f} "
            f"{m[4]:6.3f} {m[5]:6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
