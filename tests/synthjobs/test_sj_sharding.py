"""Shard planning arithmetic: exact per-class totals, bounded and balanced shard sizes.

Hypothesis is not in the virtualenv, so the properties are checked over a seeded random sample of inputs.
"""

from __future__ import annotations

import math
import random

import pytest

from synthjobs.rules.sharding import plan_shards, shard_count, split_total


def _random_cases(n: int, seed: int = 20240501) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        classes = rng.randint(1, 12)
        counts = [rng.choice([0, 0, 1, 2, rng.randint(0, 50), rng.randint(0, 5000)]) for _ in range(classes)]
        if sum(counts) == 0:
            counts[rng.randrange(classes)] = rng.randint(1, 100)
        shard_size = rng.choice([1, 2, 3, 7, rng.randint(1, 300), rng.randint(1, 20000)])
        shard_size = max(shard_size, math.ceil(sum(counts) / 400))  # at most 400 shards: keeps this fast
        cases.append((counts, shard_size))
    return cases


def _check_plan(counts: list[int], shard_size: int) -> None:
    plan = plan_shards(counts, shard_size)
    total = sum(counts)
    sizes = [sum(shard) for shard in plan]
    assert len(plan) == math.ceil(total / shard_size)
    assert all(len(shard) == len(counts) for shard in plan)
    assert [sum(column) for column in zip(*plan, strict=True)] == counts
    assert all(count >= 0 for shard in plan for count in shard)
    assert max(sizes) <= shard_size
    assert max(sizes) - min(sizes) <= 1
    for cls in range(len(counts)):  # each class is spread evenly too
        column = [shard[cls] for shard in plan]
        assert max(column) - min(column) <= 1, (counts, shard_size, cls)


def test_plan_properties_hold_over_seeded_random_inputs() -> None:
    for counts, shard_size in _random_cases(1500):
        _check_plan(counts, shard_size)


def test_even_split_gives_identical_shards() -> None:
    assert plan_shards([4, 4], 4) == [[2, 2], [2, 2]]


def test_uneven_split_staggers_remainders_across_shards() -> None:
    plan = plan_shards([5, 5, 5], 4)  # 15 samples → 4 shards of 4,4,4,3
    assert len(plan) == 4
    assert sorted(sum(shard) for shard in plan) == [3, 4, 4, 4]
    assert [sum(column) for column in zip(*plan, strict=True)] == [5, 5, 5]
    _check_plan([5, 5, 5], 4)


@pytest.mark.parametrize(("counts", "shard_size"), [([0, 7, 0, 3], 4), ([0, 0, 1], 1), ([9, 0], 2)])
def test_classes_with_zero_count_get_zero_in_every_shard(counts: list[int], shard_size: int) -> None:
    plan = plan_shards(counts, shard_size)
    for cls, count in enumerate(counts):
        if count == 0:
            assert all(shard[cls] == 0 for shard in plan)
    _check_plan(counts, shard_size)


def test_shard_size_larger_than_the_total_gives_one_shard() -> None:
    assert plan_shards([3, 1, 2], 1000) == [[3, 1, 2]]
    assert plan_shards([3, 1, 2], 6) == [[3, 1, 2]]


def test_shard_size_one_gives_one_sample_per_shard() -> None:
    plan = plan_shards([2, 1], 1)
    assert sorted(map(tuple, plan)) == [(0, 1), (1, 0), (1, 0)]


def test_plan_depends_only_on_the_request() -> None:
    assert plan_shards([1000] * 10, 333) == plan_shards([1000] * 10, 333)


@pytest.mark.parametrize(
    ("counts", "shard_size"),
    [([], 10), ([0, 0], 10), ([5], 0), ([5], -1), ([5, -1], 10), ([-3, 5], 10)],
)
def test_plan_shards_refuses_non_positive_inputs(counts: list[int], shard_size: int) -> None:
    with pytest.raises(ValueError):
        plan_shards(counts, shard_size)


@pytest.mark.parametrize(("total", "shard_size", "expected"), [(1, 1, 1), (10, 3, 4), (9, 3, 3), (5, 100, 1)])
def test_shard_count_is_the_ceiling(total: int, shard_size: int, expected: int) -> None:
    assert shard_count(total, shard_size) == expected


@pytest.mark.parametrize(("total", "shard_size"), [(0, 1), (-1, 1), (1, 0), (1, -5)])
def test_shard_count_refuses_non_positive_inputs(total: int, shard_size: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        shard_count(total, shard_size)


# --- split_total: a total split by proportions --------------------------------------------------------


def test_split_total_adds_up_and_stays_within_one_of_the_exact_share() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        weights = [rng.choice([0.0, rng.random(), rng.randint(1, 100)]) for _ in range(rng.randint(1, 12))]
        if sum(weights) == 0:
            weights[0] = 1.0
        total = rng.choice([0, 1, 7, rng.randint(0, 10_000)])
        counts = split_total(total, weights)
        assert sum(counts) == total and all(count >= 0 for count in counts)
        for weight, count in zip(weights, counts, strict=True):
            assert abs(count - total * weight / sum(weights)) < 1
            if weight == 0:
                assert count == 0


def test_split_total_gives_remainders_to_the_largest_fractions() -> None:
    assert split_total(10, [1, 1, 1]) == [4, 3, 3]
    assert split_total(7, [0, 0.5, 0, 0.5]) == [0, 4, 0, 3]
    assert split_total(5, [1, 3]) == [1, 4]


@pytest.mark.parametrize(("total", "weights"), [(-1, [1.0]), (5, []), (5, [0.0, 0.0]), (5, [1.0, -0.1])])
def test_split_total_refuses_invalid_inputs(total: int, weights: list[float]) -> None:
    with pytest.raises(ValueError):
        split_total(total, weights)


def test_split_total_never_gives_samples_to_a_class_of_weight_zero_even_for_huge_weights() -> None:
    counts = split_total(10, [1e308, 1e308, 0.0, 0.0])
    assert counts[2] == counts[3] == 0 and sum(counts) == 10
