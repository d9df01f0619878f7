"""Score a trained CVAE: the one way to generate N samples per class and turn them into figures.

Every caller (the training job's metrics, the promotion gate, a sampling job's TSTR and shard scores, the
preview grids, `python -m training` and `bench/quality.py`) goes through this module, so one model has one
`conditional_accuracy`, measured one way.

The figures (`Scores`):

- conditional accuracy: the share of generated images that the evaluation classifier (the recipe of
  `training.classifier` trained on the real training split) assigns to the label they were generated for,
  overall and per class. We track it for a CVAE because a model can have a good ELBO and still ignore
  its label.
- TSTR ("train on synthetic, test on real", Esteban et al. 2017): the same recipe trained only on the
  generated images, tested on the real test split. It is read against TRTR, the recipe trained on the
  real training split with the same seed, so the two differ only in their training images.
- the test -ELBO (nats per image, beta = 1), for context.
- `validation`: the same TSTR classifier's accuracy and the -ELBO on the validation split. These, with
  the conditional accuracy (which reads no real held-out image), are what the promotion gate compares
  (`figures`): a choice reads validation, and the reported figures above read test, which nothing is
  chosen on (see `training.datasets.base`).
- the privacy report (`training.privacy`) and the fidelity report (`training.fidelity`), on a seeded
  subset of at most `REPORT_SAMPLES` of the scored samples (stream REPORT), against the real training
  split and the real test split (DCR share's held-out set is test); privacy in flat pixels and in the
  evaluation classifier's penultimate-layer features, fidelity in those features
  (`feature_extractor_name` names them).

Random streams. Everything random in an evaluation comes from a named `Stream` derived from one seed
(a training job's seed, or a sampling job's):

    stream_seed(seed, stream) = int(sha256(f"synthjobs-eval:{stream.value}:{seed}")[:8], big-endian) >> 1

a stable 63-bit hash, as `training.sample.shard_generator` uses with the prefix "synthjobs-shard": streams
are unrelated to one another and to a sampling job's shards, and never change between processes or
machines. Drawing more from one stream (more samples per class, a TRTR) leaves the others as they were.

`EVALUATION_RECIPE` names the recipe: bump it when a derivation, the classifier recipe or the sampling
here changes, so figures stored by an older recipe are re-measured instead of compared with new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from training.classifier import (
    accuracy,
    as_flat_pixels,
    feature_extractor_name,
    features,
    fit_classifier,
    predict,
    train_classifier,
)
from training.data import ImageDataset
from training.fidelity import fidelity_report
from training.model import CVAE
from training.plots import sample_grid_png
from training.privacy import MIN_REAL_ROWS, equal_subsets, gate_figures, privacy_report
from training.sample import generate
from training.train import heldout_neg_elbo

# 2: three-way split; TSTR and the -ELBO are reported on test and gated on validation.
EVALUATION_RECIPE = 2
# Samples per class a model is scored on unless the caller says otherwise (the worker's default
# SYNTHJOBS_TSTR_SAMPLES_PER_CLASS is the same number).
DEFAULT_SAMPLES_PER_CLASS = 500
PREVIEW_PER_CLASS = 10  # columns of a preview grid
# What the promotion gate compares (synthjobs.rules.promotion.decide reads these keys).
GATE_FIGURES = ("tstr", "conditional_accuracy", "heldout_neg_elbo")
# Synthetic samples the privacy and fidelity reports read, and real rows per set (train, held-out).
REPORT_SAMPLES = 2000
REPORT_REAL_MAX = 2000


class Stream(StrEnum):
    """The named random streams of an evaluation, each derived from the job seed by `stream_seed`."""

    SAMPLES = "samples"  # latents of the N-per-class samples that are scored
    CLASSIFIER = "classifier"  # weights and shuffling of the evaluation classifier (real training split)
    TSTR = "tstr"  # weights and shuffling of the TSTR classifier, and of TRTR (same seed on purpose)
    GRID = "grid"  # latents of the preview grid
    REPORT = "report"  # which scored samples and which real rows the privacy and fidelity reports read


def stream_seed(seed: int, stream: Stream) -> int:
    """Return the 63-bit seed of `stream` for a job seeded with `seed` (derivation: the module doc)."""
    digest = hashlib.sha256(f"synthjobs-eval:{stream.value}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def stream_generator(seed: int, stream: Stream) -> torch.Generator:
    """A fresh CPU generator for `stream`: the same draws for the same (seed, stream), wherever it runs."""
    return torch.Generator().manual_seed(stream_seed(seed, stream))


def sample_per_class(
    model: CVAE,
    n_per_class: int,
    *,
    seed: int,
    stream: Stream = Stream.SAMPLES,
    classes: Sequence[int] | None = None,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Generate `n_per_class` images of each class, in class order, from one named stream.

    Args:
        model: the CVAE.
        n_per_class: images per class (at least 1).
        seed: the job seed the stream is derived from.
        stream: which stream the latents come from (SAMPLES for scoring, GRID for previews).
        classes: class indices to generate; default every class of the model.
        temperature: scales the prior's standard deviation.
        device: where to decode.
        image_shape: (C, H, W); default `model.image_shape`.

    Returns:
        (images, labels): uint8 images as `generate` returns them, and int64 labels (N,) on the CPU.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    wanted = torch.arange(model.num_classes) if classes is None else torch.as_tensor(list(classes))
    labels = wanted.to(torch.int64).repeat_interleave(n_per_class)
    images = generate(
        model,
        labels,
        generator=stream_generator(seed, stream),
        temperature=temperature,
        device=device,
        image_shape=image_shape,
    )
    return images, labels


def preview_grid(
    model: CVAE,
    *,
    seed: int,
    classes: Sequence[int] | None = None,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
) -> bytes:
    """A PNG of `PREVIEW_PER_CLASS` samples per class (one labelled row per class of the model), stream GRID.

    Rows are labelled with `class_names` (the model's, from its checkpoint); class indices without them.
    """
    images, labels = sample_per_class(
        model,
        PREVIEW_PER_CLASS,
        seed=seed,
        stream=Stream.GRID,
        classes=classes,
        temperature=temperature,
        device=device,
    )
    names = (
        [str(n) for n in class_names]
        if class_names is not None
        else [str(i) for i in range(model.num_classes)]
    )
    return sample_grid_png(images, labels.numpy(), names, per_class=PREVIEW_PER_CLASS)


def evaluation_classifier(data: ImageDataset, *, seed: int, device: str | torch.device = "cpu") -> nn.Module:
    """The evaluation classifier of a job seeded with `seed`: the recipe on `data`'s real training split.

    Stored in the model's checkpoint; a sampling job scores its shards with the stored one.
    """
    return train_classifier(data, seed=stream_seed(seed, Stream.CLASSIFIER), device=device)


@dataclass(frozen=True)
class ClassCounts:
    """Per-class (scored, correct) counts of generated images; shards' counts add up to the job's."""

    scored: tuple[int, ...]
    correct: tuple[int, ...]

    @classmethod
    def of(
        cls, classifier: nn.Module, images: np.ndarray | torch.Tensor, labels: Any, num_classes: int
    ) -> ClassCounts:
        """Score `images` (as `generate` returns them, or flat pixels) against their requested labels."""
        pixels = as_flat_pixels(images)
        truth = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
        right = predict(classifier, pixels).cpu() == truth
        scored = torch.bincount(truth, minlength=num_classes)
        correct = torch.bincount(truth[right], minlength=num_classes)
        return cls(tuple(scored.tolist()), tuple(correct.tolist()))

    @classmethod
    def none(cls, num_classes: int) -> ClassCounts:
        """Nothing scored (a shard with no classifier to score with)."""
        return cls((0,) * num_classes, (0,) * num_classes)

    def __add__(self, other: ClassCounts) -> ClassCounts:
        return ClassCounts(
            tuple(a + b for a, b in zip(self.scored, other.scored, strict=True)),
            tuple(a + b for a, b in zip(self.correct, other.correct, strict=True)),
        )

    @property
    def overall(self) -> float | None:
        """The share correct over every class; None when nothing was scored."""
        total = sum(self.scored)
        return sum(self.correct) / total if total else None

    def per_class(self) -> dict[int, float]:
        """{class index: share correct}, only for classes scored (an absent class has no accuracy)."""
        return {c: right / n for c, (n, right) in enumerate(zip(self.scored, self.correct, strict=True)) if n}


def conditional_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Score generated images against the labels they were generated for.

    Args:
        classifier: an evaluation classifier (see `evaluation_classifier`).
        images: float (N, D) pixel values in [0, 1] flattened in (C, H, W) order; uint8 images are scaled by
            1/255, and (N, H, W) or channels-last (N, H, W, C) images (as `generate` returns) are flattened.
        labels: int64 (N,) the requested classes.

    Returns:
        {"overall": float, "per_class": {str(class_index): float}}; only classes present in `labels`
        appear in "per_class" (an absent class has no accuracy, and NaN is not JSON).
    """
    truth = torch.as_tensor(labels).reshape(-1)
    counts = ClassCounts.of(classifier, images, truth, int(truth.max()) + 1 if len(truth) else 0)
    per_class = {str(c): v for c, v in counts.per_class().items()}
    return {"overall": counts.overall or 0.0, "per_class": per_class}


def tstr(
    generated_x: np.ndarray | torch.Tensor,
    generated_y: np.ndarray | torch.Tensor,
    data: ImageDataset,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Train on synthetic, test on real: accuracy on `data`'s test split of the recipe trained on samples.

    Args:
        generated_x: images as `generate` returns them (uint8 (N, H, W) or (N, H, W, C)), or float (N, D)
            flattened in (C, H, W) order.
        generated_y: int (N,) the labels they were generated for.
        data: the real dataset; only its test split is used.
        seed: the classifier's seed itself (`score_model` passes `stream_seed(seed, Stream.TSTR)`).
        device: where to train.

    Returns:
        Test accuracy in [0, 1]; identical for identical inputs and seed.
    """
    return tstr_both(generated_x, generated_y, data, seed=seed, device=device)[0]


def tstr_both(
    generated_x: np.ndarray | torch.Tensor,
    generated_y: np.ndarray | torch.Tensor,
    data: ImageDataset,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """(test, validation) accuracy of one TSTR classifier (`tstr`'s arguments); validation falls back to
    test when the dataset has no validation split (`ImageDataset.choice_split`)."""
    x = as_flat_pixels(generated_x, data.image_shape)
    y = torch.as_tensor(generated_y).to(torch.int64).reshape(-1)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"tstr needs one label per generated image, got {len(x)} images and {len(y)} labels")
    classifier = fit_classifier(x, y, data.image_shape, data.num_classes, seed=seed, device=device)
    val_x, val_y = data.choice_split()
    return (
        accuracy(classifier, data.test_x.to(device), data.test_y.to(device)),
        accuracy(classifier, val_x.to(device), val_y.to(device)),
    )


def trtr(data: ImageDataset, *, seed: int = 0, device: str | torch.device = "cpu") -> float:
    """Train on real, test on real: test accuracy of the `tstr` recipe trained on the real train split."""
    classifier = train_classifier(data, seed=seed, device=device)
    return accuracy(classifier, data.test_x.to(device), data.test_y.to(device))


@dataclass(frozen=True)
class Scores:
    """A model's figures and the parameters they were measured with (see the module doc)."""

    conditional_accuracy: float
    per_class: dict[str, float]  # {str(class index): accuracy}, as stored in a model's metrics
    tstr: float
    heldout_neg_elbo: float
    trtr: float | None
    samples_per_class: int
    seed: int
    temperature: float
    privacy: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    # {"tstr", "heldout_neg_elbo"} on the validation split: what the gate compares (None: not measured)
    validation: dict[str, float] | None = None

    def evaluation(self) -> dict[str, Any]:
        """How the figures were measured: two models whose records are equal (on the same data) were
        scored alike, so their stored figures compare as if measured side by side."""
        return {
            "recipe": EVALUATION_RECIPE,
            "samples_per_class": self.samples_per_class,
            "seed": self.seed,
            "temperature": self.temperature,
        }

    def figures(self) -> dict[str, float]:
        """The figures the promotion gate compares (`GATE_FIGURES`, TSTR and -ELBO on validation), and with
        a privacy report its worst-space `dcr_share` and `near_copies` (which the gate's privacy ceilings
        read: a ceiling on the reported test figure, not a comparison)."""
        figures = {name: float(getattr(self, name)) for name in GATE_FIGURES}
        figures.update(self.validation or {})
        if self.privacy is not None:
            figures.update(gate_figures(self.privacy))
        return figures

    def to_metrics(self) -> dict[str, Any]:
        """The keys a model's metrics store: read by the API, the CLI, the demo and the promotion gate."""
        metrics: dict[str, Any] = {
            "conditional_accuracy": self.conditional_accuracy,
            "conditional_accuracy_per_class": dict(self.per_class),
            "tstr": self.tstr,
            "heldout_neg_elbo": self.heldout_neg_elbo,
            "evaluation": self.evaluation(),
        }
        if self.validation is not None:
            metrics["validation"] = dict(self.validation)
        if self.trtr is not None:
            metrics["trtr"] = self.trtr
        if self.privacy is not None:
            metrics["privacy"] = self.privacy
        if self.fidelity is not None:
            metrics["fidelity"] = self.fidelity
        return metrics


def figures_of(metrics: dict[str, Any]) -> dict[str, float]:
    """The gate's figures from a model's stored metrics (as `Scores.to_metrics` wrote them): equal to
    `Scores.figures()` of the scores stored, privacy figures included when the metrics hold a report."""
    figures = {name: float(metrics[name]) for name in GATE_FIGURES}
    figures.update({k: float(v) for k, v in (metrics.get("validation") or {}).items()})
    if metrics.get("privacy"):
        figures.update(gate_figures(metrics["privacy"]))
    return figures


def score_model(
    model: CVAE,
    data: ImageDataset,
    *,
    seed: int,
    samples_per_class: int = DEFAULT_SAMPLES_PER_CLASS,
    temperature: float = 1.0,
    classifier: nn.Module | None = None,
    with_trtr: bool = False,
    with_reports: bool = True,
    device: str | torch.device = "cpu",
) -> Scores:
    """Generate `samples_per_class` images of each class (stream SAMPLES) and score them.

    Args:
        model: the CVAE, trained on `data`'s classes and image shape.
        data: the real dataset: the classifiers train on its training split and test on its test split
            (and, for the gate's figures, its validation split).
        seed: the job seed every stream is derived from.
        samples_per_class: images per class scored, and that TSTR trains on.
        temperature: scales the prior's standard deviation when sampling.
        classifier: the evaluation classifier, when the caller already has it; it must be
            `evaluation_classifier(data, seed=seed)` (trained here when None) for the figures to be the ones
            a model records.
        with_trtr: also train the recipe on the real training split (stream TSTR) for TRTR.
        with_reports: also compute the privacy and fidelity reports (`reports`).
        device: where to decode and train.

    Returns:
        Scores; the same model, data and arguments give the same Scores (on a deterministic device).
    """
    if classifier is None:
        classifier = evaluation_classifier(data, seed=seed, device=device)
    images, labels = sample_per_class(
        model,
        samples_per_class,
        seed=seed,
        classes=range(data.num_classes),
        temperature=temperature,
        device=device,
        image_shape=data.image_shape,
    )
    counts = ClassCounts.of(classifier, images, labels, data.num_classes)
    classifier_seed = stream_seed(seed, Stream.TSTR)
    test_tstr, val_tstr = tstr_both(images, labels, data, seed=classifier_seed, device=device)
    return Scores(
        conditional_accuracy=counts.overall or 0.0,
        per_class={str(c): v for c, v in counts.per_class().items()},
        tstr=test_tstr,
        heldout_neg_elbo=heldout_neg_elbo(model, data, device=device, split="test"),
        validation={
            "tstr": val_tstr,
            "heldout_neg_elbo": heldout_neg_elbo(model, data, device=device, split="validation"),
        },
        trtr=trtr(data, seed=classifier_seed, device=device) if with_trtr else None,
        samples_per_class=samples_per_class,
        seed=int(seed),
        temperature=float(temperature),
        **(reports(classifier, images, labels, data, seed=seed) if with_reports else {}),
    )


def reports(
    classifier: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Any,
    data: ImageDataset,
    *,
    seed: int,
    samples: int = REPORT_SAMPLES,
) -> dict[str, dict[str, Any]]:
    """The privacy and fidelity reports of generated images against `data`'s train and held-out splits.

    A seeded subset (stream REPORT) of at most `samples` images is read, so a sampling job's figure
    comes from a fixed-size subset whatever its size. Real train and held-out rows are equal-size seeded
    subsets (`equal_subsets`); the held-out rows are the test split (nothing is chosen on it).

    Returns:
        {"privacy": {"pixels": {...}, "features": {...}, "extractor": str}, "fidelity": {...}}.
    """
    x = as_flat_pixels(images, data.image_shape)
    y = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
    g = stream_generator(seed, Stream.REPORT)
    pick = torch.randperm(len(x), generator=g)[: min(samples, len(x))]
    x, y = x[pick], y[pick]
    subset_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    train, holdout = equal_subsets(
        data.train_x.cpu(), data.test_x.cpu(), seed=subset_seed, max_size=REPORT_REAL_MAX
    )
    name = feature_extractor_name(classifier)
    if len(train) < MIN_REAL_ROWS:
        # A tiny dataset (an image folder of a few files per split) still trains; it just has no report.
        reason = f"too few real images for a report: {len(train)} per split, at least {MIN_REAL_ROWS} needed"
        return {
            "privacy": {"skipped": reason, "extractor": name},
            "fidelity": {"skipped": reason, "extractor": name},
        }
    privacy = {
        "pixels": privacy_report(x, train, holdout),
        "features": privacy_report(
            features(classifier, x), features(classifier, train), features(classifier, holdout)
        ),
        "extractor": name,
    }
    fidelity = fidelity_report(
        features(classifier, data.test_x.cpu()),
        data.test_y.cpu(),
        features(classifier, x),
        y,
        extractor=name,
        seed=subset_seed,
    )
    return {"privacy": privacy, "fidelity": fidelity}


def per_class_table(metrics: dict[str, Any], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: conditional accuracy and the fidelity figures, so a weak class is visible.

    Read from a model's metrics (`Scores.to_metrics`); a figure the metrics lack is None.
    """
    accuracy_of = metrics.get("conditional_accuracy_per_class", {})
    fidelity = (metrics.get("fidelity") or {}).get("per_class", {})
    rows = []
    for c, name in enumerate(class_names):
        row: dict[str, Any] = {"class": c, "name": name, "conditional_accuracy": accuracy_of.get(str(c))}
        row.update(fidelity.get(str(c), {}))
        rows.append(row)
    return rows
