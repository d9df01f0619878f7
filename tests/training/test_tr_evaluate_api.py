"""The one evaluation API: N samples per class from named streams, scored into one `Scores`."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from training.data import ImageDataset
from training.evaluate import (
    GATE_FIGURES,
    ClassCounts,
    Stream,
    evaluation_classifier,
    figures_of,
    preview_grid,
    sample_per_class,
    score_model,
    stream_seed,
    trtr,
)
from training.train import TrainResult

SEED = 3  # the `trained` fixture's job seed
N = 20


@pytest.fixture(scope="module")
def scores(trained: TrainResult, digits: ImageDataset):
    return score_model(trained.model, digits, seed=SEED, samples_per_class=N, with_trtr=True)


def test_same_seed_gives_the_same_scores(trained: TrainResult, digits: ImageDataset, scores) -> None:
    again = score_model(trained.model, digits, seed=SEED, samples_per_class=N, with_trtr=True)
    assert again == scores
    given = evaluation_classifier(digits, seed=SEED)  # what a training job stores and passes in
    assert score_model(trained.model, digits, seed=SEED, samples_per_class=N, classifier=given) == (
        score_model(trained.model, digits, seed=SEED, samples_per_class=N)
    )
    other = score_model(trained.model, digits, seed=SEED + 1, samples_per_class=N)
    assert other.tstr != scores.tstr or other.conditional_accuracy != scores.conditional_accuracy


def test_scores_cover_every_class_and_are_sensible(scores, digits: ImageDataset) -> None:
    assert set(scores.per_class) == {str(c) for c in range(digits.num_classes)}
    assert scores.conditional_accuracy == pytest.approx(np.mean(list(scores.per_class.values())))
    assert scores.conditional_accuracy > 0.5 and 0 < scores.tstr <= 1 and scores.trtr is not None
    assert scores.trtr == trtr(digits, seed=stream_seed(SEED, Stream.TSTR)), "TRTR shares TSTR's stream"
    assert scores.heldout_neg_elbo > 0
    assert scores.evaluation() == {"recipe": 2, "samples_per_class": N, "seed": SEED, "temperature": 1.0}


def test_reported_figures_read_test_and_the_gate_reads_validation(
    scores, trained: TrainResult, digits: ImageDataset
) -> None:
    from training.train import heldout_neg_elbo

    assert scores.heldout_neg_elbo == heldout_neg_elbo(trained.model, digits, split="test")
    assert scores.validation is not None
    assert scores.validation["heldout_neg_elbo"] == heldout_neg_elbo(trained.model, digits)
    assert scores.validation["heldout_neg_elbo"] != scores.heldout_neg_elbo
    figures = scores.figures()
    assert (
        figures["tstr"] == scores.validation["tstr"]
        and figures["heldout_neg_elbo"] == (scores.validation["heldout_neg_elbo"])
    )
    assert figures["conditional_accuracy"] == scores.conditional_accuracy  # reads no held-out image
    assert scores.to_metrics()["tstr"] == scores.tstr  # what is reported: test


def test_stored_metrics_give_back_the_gate_figures(scores) -> None:
    metrics = scores.to_metrics()
    for key in ("conditional_accuracy", "conditional_accuracy_per_class", "tstr", "heldout_neg_elbo"):
        assert key in metrics
    assert figures_of(metrics) == scores.figures()
    # The gate figures, then the privacy report's worst-space figures that the privacy ceilings read.
    assert tuple(scores.figures()) == (*GATE_FIGURES, "dcr_share", "near_copies")
    assert metrics["evaluation"] == scores.evaluation()


def test_sample_per_class_gives_n_of_each_class_in_class_order(trained: TrainResult) -> None:
    images, labels = sample_per_class(trained.model, 7, seed=1)
    assert images.shape == (70, 8, 8) and images.dtype == np.uint8
    assert labels.tolist() == [c for c in range(10) for _ in range(7)]
    some, labels = sample_per_class(trained.model, 3, seed=1, classes=[2, 5])
    assert labels.tolist() == [2, 2, 2, 5, 5, 5] and len(some) == 6
    with pytest.raises(ValueError, match="at least 1"):
        sample_per_class(trained.model, 0, seed=1)


def test_sample_per_class_is_deterministic_for_a_seed_and_stream(trained: TrainResult) -> None:
    a, _ = sample_per_class(trained.model, 5, seed=9)
    torch.manual_seed(123)  # the global RNG plays no part
    b, _ = sample_per_class(trained.model, 5, seed=9)
    assert a.tobytes() == b.tobytes()
    grid, _ = sample_per_class(trained.model, 5, seed=9, stream=Stream.GRID)
    other_seed, _ = sample_per_class(trained.model, 5, seed=10)
    assert grid.tobytes() != a.tobytes() and other_seed.tobytes() != a.tobytes()


def test_streams_are_named_distinct_and_stable() -> None:
    seeds = {stream: stream_seed(SEED, stream) for stream in Stream}
    assert len(set(seeds.values())) == len(Stream)
    assert all(0 <= s < 2**63 for s in seeds.values())
    assert stream_seed(SEED + 1, Stream.SAMPLES) != seeds[Stream.SAMPLES]
    # Pinned: a changed derivation changes every stored figure (bump EVALUATION_RECIPE with it).
    digest = hashlib.sha256(b"synthjobs-eval:samples:0").digest()  # the derivation the module doc states
    assert stream_seed(0, Stream.SAMPLES) == int.from_bytes(digest[:8], "big") >> 1 == 6806625217913824893


def test_scoring_leaves_the_global_rng_alone(trained: TrainResult, digits: ImageDataset) -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    score_model(trained.model, digits, seed=SEED, samples_per_class=5)
    assert torch.equal(torch.get_rng_state(), before)


def test_class_counts_of_parts_add_up_to_the_whole(trained: TrainResult, digits: ImageDataset) -> None:
    classifier = evaluation_classifier(digits, seed=SEED)
    images, labels = sample_per_class(trained.model, 6, seed=2)
    whole = ClassCounts.of(classifier, images, labels, 10)
    parts = ClassCounts.of(classifier, images[:25], labels[:25], 10) + ClassCounts.of(
        classifier, images[25:], labels[25:], 10
    )
    assert parts == whole and sum(whole.scored) == 60 and whole.scored == (6,) * 10
    assert whole.overall == sum(whole.correct) / 60
    assert ClassCounts.none(3).overall is None and ClassCounts.none(3).per_class() == {}


def test_preview_grid_is_a_png_of_ten_per_class(trained: TrainResult) -> None:
    png = preview_grid(trained.model, seed=SEED)
    assert png.startswith(b"\x89PNG") and png == preview_grid(trained.model, seed=SEED)
    assert png != preview_grid(trained.model, seed=SEED, classes=[0, 1])
