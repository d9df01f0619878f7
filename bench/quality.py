"""Sample quality of the CVAE on digits, for both conditionings: `python bench/quality.py [--epochs N]`.

For each conditioning it trains with the default hyperparameters (TrainConfig()), then reports:

- held-out -ELBO (nats per image, beta = 1);
- conditional accuracy of `--samples-per-class` samples per class, scored by the evaluation classifier
  trained on the real training split (overall, and the worst class);
- TSTR: the fixed classifier recipe trained only on those samples, tested on the real held-out split;
- TRTR: the same recipe (same seed) trained on the real training split, tested on the same split;

all from `training.evaluate.score_model` with `--seed` as the job seed, i.e. the figures a training job with
that seed records (its default is 500 samples per class, SYNTHJOBS_TSTR_SAMPLES_PER_CLASS);
- TSTR - TRTR in points, and the training wall time.

Targets with the defaults: conditional accuracy >= 95 %, TSTR within 5 points of TRTR.
`--size 28` upscales digits to 28x28, which trains the conv body and scores with the CNN classifier.
Prints only; asserts nothing. Set OMP_NUM_THREADS=1 on small CPU machines.
"""

from __future__ import annotations

import argparse
import time

import torch

from training.config import ARCHITECTURES, CONDITIONINGS, TrainConfig
from training.data import ImageDataset, load_digits_dataset
from training.evaluate import evaluation_classifier, score_model
from training.model import resolve_architecture
from training.train import train


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-class", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--kl-warmup-epochs", type=int, default=0)
    p.add_argument("--size", type=int, default=8, help="upscale digits to size x size (8 = as bundled)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="auto")
    p.add_argument("--conditioning", choices=CONDITIONINGS, nargs="+", default=list(CONDITIONINGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def measure(
    cfg: TrainConfig, data: ImageDataset, args: argparse.Namespace, classifier: torch.nn.Module
) -> dict:
    started = time.perf_counter()
    result = train(cfg, data, device=args.device)
    seconds = time.perf_counter() - started
    scores = score_model(
        result.model,
        data,
        seed=cfg.seed,
        samples_per_class=args.samples_per_class,
        temperature=args.temperature,
        classifier=classifier,
        with_trtr=True,
        device=args.device,
    )
    return {
        "elbo": scores.heldout_neg_elbo,
        "acc": scores.conditional_accuracy,
        "min_class": min(scores.per_class.values()),
        "tstr": scores.tstr,
        "trtr": scores.trtr,
        "seconds": seconds,
        "per_epoch": sum(m.seconds for m in result.history) / len(result.history),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits_dataset(size=args.size)
    classifier = evaluation_classifier(data, seed=args.seed, device=args.device)
    print(
        f"digits {data.image_shape}, {len(data.train_y)} train / {len(data.test_y)} held-out; "
        f"epochs {args.epochs}, seed {args.seed}, {args.samples_per_class} samples/class, "
        f"temperature {args.temperature}, device {args.device}"
    )
    header = (
        f"{'conditioning':<12} {'arch':<5} {'-ELBO':>7} {'cond acc':>8} {'min class':>9} "
        f"{'TSTR':>6} {'TRTR':>6} {'TSTR-TRTR':>9} {'train s':>8} {'s/epoch':>8}"
    )
    print(header)
    print("-" * len(header))
    for conditioning in args.conditioning:
        cfg = TrainConfig(
            conditioning=conditioning,
            epochs=args.epochs,
            seed=args.seed,
            kl_warmup_epochs=args.kl_warmup_epochs,
            architecture=args.architecture,
        )
        m = measure(cfg, data, args, classifier)
        real = m["trtr"]
        arch = resolve_architecture(cfg.architecture, data.image_shape)
        print(
            f"{conditioning:<12} {arch:<5} {m['elbo']:7.2f} {100 * m['acc']:7.2f}% "
            f"{100 * m['min_class']:8.2f}% {100 * m['tstr']:5.1f}% {100 * real:5.1f}% "
            f"{100 * (m['tstr'] - real):+8.1f}  {m['seconds']:8.1f} {m['per_epoch']:8.3f}"
        )


if __name__ == "__main__":
    main()
