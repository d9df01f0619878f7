"""CPU smoke run with no services: `python -m training --epochs 1 [--out model.pt]`.

Trains a CVAE, prints per-epoch metrics, scores `--samples-per-class` samples of each class with
`training.evaluate.score_model` (conditional accuracy, and TSTR against TRTR; the same figures a training
job records) and writes the checkpoint if `--out` is given. `--dataset MNIST --data-root DIR` reads
torchvision's files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from training.checkpoint import save_checkpoint
from training.classifier import accuracy
from training.config import ARCHITECTURES, CONDITIONINGS, TrainConfig
from training.data import load_dataset
from training.evaluate import DEFAULT_SAMPLES_PER_CLASS, evaluation_classifier, score_model
from training.train import EpochMetrics, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=defaults.dataset)
    p.add_argument("--data-root", type=Path, help="folder of torchvision's dataset files")
    p.add_argument("--download", action="store_true", help="let torchvision fetch missing files")
    p.add_argument("--conditioning", choices=CONDITIONINGS, default=defaults.conditioning)
    p.add_argument("--architecture", choices=ARCHITECTURES, default=defaults.architecture)
    p.add_argument("--kl-warmup-epochs", type=int, default=defaults.kl_warmup_epochs)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--latent-dim", type=int, default=defaults.latent_dim)
    p.add_argument("--hidden-dim", type=int, default=defaults.hidden_dim)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--beta", type=float, default=defaults.beta)
    p.add_argument("--samples-per-class", type=int, default=DEFAULT_SAMPLES_PER_CLASS)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write the checkpoint here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        dataset=args.dataset,
        conditioning=args.conditioning,
        architecture=args.architecture,
        kl_warmup_epochs=args.kl_warmup_epochs,
        amp=args.amp,
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        beta=args.beta,
        seed=args.seed,
    )
    data = load_dataset(cfg.dataset, root=args.data_root, download=args.download)
    print(f"config: {cfg.to_dict()}")
    print(
        f"data: {len(data.train_x)} train / {len(data.val_x)} validation / {len(data.test_x)} test, "
        f"image shape {data.image_shape}"
    )

    def show(m: EpochMetrics) -> None:
        print(
            f"epoch {m.epoch:3d}/{m.epochs}  train loss {m.train_loss:8.3f}  "
            f"validation -ELBO {m.heldout_neg_elbo:8.3f} nats  {m.seconds:6.2f} s"
        )

    started = time.perf_counter()
    result = train(cfg, data, device=args.device, on_epoch=show)
    train_seconds = time.perf_counter() - started

    classifier = evaluation_classifier(data, seed=cfg.seed, device=args.device)
    real_acc = accuracy(classifier, data.test_x.to(args.device), data.test_y.to(args.device))
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
    per_class = "  ".join(f"{data.class_names[int(k)]}:{v:.2f}" for k, v in scores.per_class.items())
    per_epoch = sum(m.seconds for m in result.history) / max(len(result.history), 1)
    print(f"training: {train_seconds:.2f} s wall, {per_epoch:.3f} s/epoch (incl. held-out evaluation)")
    print(f"evaluation classifier held-out accuracy: {real_acc:.4f}")
    print(f"conditional accuracy ({args.samples_per_class}/class): {scores.conditional_accuracy:.4f}")
    print(f"per class: {per_class}")
    print(f"TSTR {scores.tstr:.4f} vs TRTR {scores.trtr:.4f} (classifier trained on samples vs real images)")

    if args.out is not None:
        metrics = {**scores.to_metrics(), "classifier_heldout_accuracy": real_acc}
        blob = save_checkpoint(
            result.model,
            cfg,
            class_names=data.class_names,
            image_shape=data.image_shape,
            metrics=metrics,
            classifier=classifier,
        )
        args.out.write_bytes(blob)
        print(f"wrote {args.out} ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
