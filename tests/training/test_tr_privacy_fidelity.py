"""The privacy and fidelity figures on constructed data, where the right answer is known."""

from __future__ import annotations

import torch

from training.fidelity import fidelity_report, frechet_distance, kid, manifold_scores
from training.privacy import dcr_share, equal_subsets, gate_figures, nearest_distances, privacy_report


def _draw(n: int, seed: int, d: int = 8) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_copies_of_training_rows_have_dcr_zero_and_share_one() -> None:
    train, holdout = _draw(200, 1), _draw(200, 2)
    report = privacy_report(train[:50].clone(), train, holdout)
    assert report["median_dcr_train"] == 0.0
    assert report["dcr_share"] == 1.0
    assert report["near_copies"] == 1.0 and report["near_copies_count"] == 50
    assert report["nndr"] == 0.0


def test_independent_draws_have_dcr_share_near_half_and_no_near_copies() -> None:
    report = privacy_report(_draw(2000, 3), _draw(1000, 1), _draw(1000, 2))
    assert 0.45 < report["dcr_share"] < 0.55
    assert report["near_copies"] < 0.03
    assert 0.5 < report["median_dcr_train"] / report["median_dcr_holdout"] < 2.0
    assert 0.0 < report["nndr"] < 1.0


def test_ties_count_half() -> None:
    assert dcr_share(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])) == 0.75


def test_nearest_distances_are_exact_across_chunks_and_exclude_self() -> None:
    x = _draw(1500, 4, d=3)
    d = nearest_distances(x, x, k=1, exclude_self=True)[:, 0]
    full = torch.cdist(x.double(), x.double()).fill_diagonal_(float("inf")).min(dim=1).values
    assert torch.allclose(d, full)


def test_equal_subsets_are_one_size_and_seeded() -> None:
    a, b = equal_subsets(_draw(30, 1), _draw(12, 2), seed=7)
    again = equal_subsets(_draw(30, 1), _draw(12, 2), seed=7)
    assert len(a) == len(b) == 12 and torch.equal(a, again[0])


def test_gate_figures_take_the_worst_space() -> None:
    report = {
        "pixels": {"dcr_share": 0.5, "near_copies": 0.2},
        "features": {"dcr_share": 0.9, "near_copies": 0.0},
    }
    assert gate_figures(report) == {"dcr_share": 0.9, "near_copies": 0.2}


def test_identical_sets_have_frechet_distance_near_zero() -> None:
    x = _draw(500, 5)
    assert abs(frechet_distance(x, x)) < 1e-6


def test_two_draws_of_one_distribution_have_kid_near_zero() -> None:
    assert abs(kid(_draw(1000, 5), _draw(1000, 6))) < 1e-2


def test_shifted_set_has_larger_frechet_distance_and_kid() -> None:
    x, y = _draw(500, 5), _draw(500, 6)
    assert frechet_distance(x, y + 2.0) > 10 * frechet_distance(x, y)
    assert kid(x, y + 2.0) > kid(x, y) + 0.1


def test_frechet_distance_matches_the_closed_form_for_a_shift() -> None:
    x = _draw(400, 8)
    assert abs(frechet_distance(x, x + 1.0) - x.shape[1]) < 1e-6  # same covariance: |mu shift|^2 = d


def test_manifold_scores_are_one_for_the_same_set_and_low_for_a_far_one() -> None:
    x = _draw(300, 9)
    same = manifold_scores(x, x.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = manifold_scores(x, x + 100.0)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0


def test_fidelity_report_names_its_extractor_and_has_each_class() -> None:
    x, labels = _draw(200, 10), torch.arange(200) % 4
    report = fidelity_report(x, labels, x + 0.01, labels, extractor="test:identity")
    assert report["extractor"] == "test:identity"
    assert set(report["per_class"]) == {"0", "1", "2", "3"}
    assert report["overall"]["precision"] > 0.9
