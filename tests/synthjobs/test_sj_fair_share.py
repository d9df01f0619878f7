"""The pure choice of the next sampling shards: fair share over tenants, then priority, then age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from synthjobs.rules.fair_share import PRIORITIES, Backlog, choose_units, priority_rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(
    job_id: str, tenant: str, *, waiting: int, in_flight: int = 0, age: int = 0, priority: str = "normal"
):
    return Backlog(job_id, tenant, priority, T0 - timedelta(seconds=age), waiting, in_flight)


def test_free_slots_alternate_between_tenants_with_backlog() -> None:
    jobs = [_job("a", "A", waiting=300, age=10), _job("b", "B", waiting=100)]
    assert choose_units(jobs, 4) == ["a", "b", "a", "b"]


def test_the_tenant_furthest_below_its_share_is_served_first() -> None:
    jobs = [_job("a", "A", waiting=300, in_flight=4, age=10), _job("b", "B", waiting=5)]
    assert choose_units(jobs, 3) == ["b", "b", "b"]


def test_weights_scale_a_tenants_share() -> None:
    jobs = [_job("a", "A", waiting=300, age=10), _job("b", "B", waiting=300)]
    chosen = choose_units(jobs, 6, {"A": 2.0})
    assert chosen.count("a") == 4 and chosen.count("b") == 2


def test_within_a_tenant_priority_goes_first_then_age() -> None:
    jobs = [
        _job("old", "A", waiting=2, age=30),
        _job("new-high", "A", waiting=2, priority="high"),
        _job("older-low", "A", waiting=2, age=60, priority="low"),
    ]
    assert choose_units(jobs, 6) == ["new-high", "new-high", "old", "old", "older-low", "older-low"]


def test_no_more_than_is_waiting_and_no_more_than_free() -> None:
    jobs = [_job("a", "A", waiting=1), _job("b", "B", waiting=0, in_flight=3)]
    assert choose_units(jobs, 5) == ["a"]
    assert choose_units(jobs, 0) == []
    assert choose_units([], 3) == []


def test_unknown_priorities_count_as_normal() -> None:
    assert PRIORITIES == ("low", "normal", "high")
    assert priority_rank(None) == priority_rank("normal") == priority_rank("urgent") == 1
    assert priority_rank("low") < priority_rank("normal") < priority_rank("high")
