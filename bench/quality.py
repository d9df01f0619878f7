"""Sample quality of the CVAE on digits, for both conditionings: `python bench/quality.py [--epochs N]`.

For each conditioning it trains with the default hyperparameters (TrainConfig()), then reports, every
held-out figure on the **test** split (the defaults were chosen on validation, `bench/quality_sweep.py`):

- test -ELBO (nats per image, beta = 1);
- conditional accuracy of `--samples-per-class` samples per class, scored by the evaluation classifier
  trained on the real training split (overall, and the worst class);
- TSTR: the fixed classifier recipe trained only on those samples, tested on the real test split;
- TRTR: the same recipe (same seed) trained on the real training split, tested on the same split;
- DCR share in pixels and in the evaluation classifier's features (held-out set: test), near copies (the
  worse of the two spaces), FD and KID, precision / recall / density / coverage (overall) in the features
  of the extractor the header names;

all from `training.evaluate.score_model` with `--seed` as the job seed, i.e. the figures a training job with
that seed records (its default is 500 samples per class, SYNTHJOBS_TSTR_SAMPLES_PER_CLASS);
- TSTR - TRTR in points, and the training wall time.

Targets with the defaults (issue 13 section 4): conditional accuracy >= 99 %, TSTR within 1 point of TRTR,
DCR share (pixels) in 0.45-0.55.
`--epsilon E` trains with DP-SGD at (E, `--delta`) and adds the accountant's epsilon spent (the classifier,
TSTR and TRTR stay outside the guarantee). `--seeds N` runs seeds `--seed` .. `--seed`+N-1 and adds a
mean +- sample standard deviation row per conditioning.
`--size 28` upscales digits to 28x28, which trains the conv body and scores with the CNN classifier.
Prints only; asserts nothing. Set OMP_NUM_THREADS=1 on small CPU machines.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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
    p.add_argument("--kl-warmup-epochs", type=int, default=TrainConfig().kl_warmup_epochs)
    p.add_argument("--size", type=int, default=8, help="upscale digits to size x size (8 = as bundled)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="auto")
    p.add_argument("--conditioning", choices=CONDITIONINGS, nargs="+", default=list(CONDITIONINGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="seeds --seed .. --seed+N-1, with mean and spread")
    p.add_argument("--epsilon", type=float, default=None, help="train with DP-SGD to this epsilon")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--learning-rate", type=float, default=TrainConfig().learning_rate)
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
    assert scores.privacy is not None and scores.fidelity is not None
    pixels, feats = scores.privacy["pixels"], scores.privacy["features"]
    overall = scores.fidelity["overall"]
    return {
        "elbo": scores.heldout_neg_elbo,
        "acc": scores.conditional_accuracy,
        "min_class": min(scores.per_class.values()),
        "tstr": scores.tstr,
        "trtr": scores.trtr,
        "dcr_px": pixels["dcr_share"],
        "dcr_ft": feats["dcr_share"],
        "near": max(pixels["near_copies"], feats["near_copies"]),
        "fd": overall["frechet_distance"],
        "kid": overall["kid"],
        "prec": overall["precision"],
        "rec": overall["recall"],
        "dens": overall["density"],
        "cov": overall["coverage"],
        "extractor": scores.privacy["extractor"],
        "seconds": seconds,
        "per_epoch": sum(m.seconds for m in result.history) / len(result.history),
        "epsilon": result.final.epsilon,
    }


def _row(label: str, arch: str, m: dict, spread: dict | None = None) -> str:
    def pm(key: str, scale: float, width: int, digits: int) -> str:
        text = f"{scale * m[key]:{width}.{digits}f}"
        return text if spread is None else f"{text}+-{scale * spread[key]:.{digits}f}"

    eps = "-" if m["epsilon"] is None else f"{m['epsilon']:.3f}"
    return (
        f"{label:<12} {arch:<5} {pm('elbo', 1, 6, 2)} {pm('acc', 100, 6, 2)}% {pm('min_class', 100, 6, 2)}% "
        f"{pm('tstr', 100, 5, 2)}% {pm('trtr', 100, 5, 2)}% {pm('gap', 100, 5, 2)} "
        f"{pm('dcr_px', 1, 5, 3)} {pm('dcr_ft', 1, 5, 3)} {pm('near', 1, 5, 3)} {pm('fd', 1, 6, 2)} "
        f"{pm('kid', 1, 6, 3)} {pm('prec', 1, 4, 2)} {pm('rec', 1, 4, 2)} {pm('dens', 1, 4, 2)} "
        f"{pm('cov', 1, 4, 2)} {pm('seconds', 1, 5, 1)} {eps:>6}"
    )


def _mean_spread(rows: list[dict]) -> tuple[dict, dict]:
    keys = ("elbo", "acc", "min_class", "tstr", "trtr", "gap", "seconds", "per_epoch")
    keys += ("dcr_px", "dcr_ft", "near", "fd", "kid", "prec", "rec", "dens", "cov")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    spread = {k: float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0 for k in keys}
    eps = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    mean["epsilon"] = max(eps) if eps else None
    return mean, spread


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits_dataset(size=args.size)
    seeds = list(range(args.seed, args.seed + args.seeds))
    classifiers = {seed: evaluation_classifier(data, seed=seed, device=args.device) for seed in seeds}
    privacy = (
        None
        if args.epsilon is None
        else {"epsilon": args.epsilon, "delta": args.delta, "max_grad_norm": args.max_grad_norm}
    )
    print(
        f"digits {data.image_shape}, {len(data.train_y)} train / {len(data.val_y)} validation / "
        f"{len(data.test_y)} test (figures on test); latent {TrainConfig().latent_dim}, hidden "
        f"{TrainConfig().hidden_dim}, beta {TrainConfig().beta}, KL warm-up {args.kl_warmup_epochs}; "
        f"epochs {args.epochs}, seeds {seeds}, {args.samples_per_class} samples/class, "
        f"temperature {args.temperature}, batch {args.batch_size}, lr {args.learning_rate}, "
        f"device {args.device}, DP-SGD {privacy or 'off'}"
    )
    header = (
        "conditioning arch  -ELBO cond acc min class TSTR TRTR TSTR-TRTR DCR(px) DCR(feat) near-copies "
        "FD KID precision recall density coverage train-s eps"
    )
    print(header)
    print("-" * len(header))
    extractor = None
    for conditioning in args.conditioning:
        rows = []
        for seed in seeds:
            cfg = TrainConfig(
                conditioning=conditioning,
                epochs=args.epochs,
                seed=seed,
                kl_warmup_epochs=args.kl_warmup_epochs,
                architecture=args.architecture,
                privacy=privacy,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
            )
            m = measure(cfg, data, args, classifiers[seed])
            m["gap"] = m["tstr"] - m["trtr"]
            extractor = m.pop("extractor")
            rows.append(m)
            arch = resolve_architecture(cfg.architecture, data.image_shape)
            print(_row(f"{conditioning}/s{seed}", arch, m), flush=True)
        if len(rows) > 1:
            mean, spread = _mean_spread(rows)
            print(_row(f"{conditioning} mean", arch, mean, spread), flush=True)
    print(f"FD, KID, precision/recall/density/coverage and DCR(feat) in the features of: {extractor}")


if __name__ == "__main__":
    main()
