"""Why a job waits (`rules.waiting`): the words and the place in line, from counts inside the tenant."""

from __future__ import annotations

from synthjobs.rules.waiting import Wait, WaitFacts, explain_wait, queued_eta


def test_a_queued_training_job_behind_your_own_jobs_says_how_many() -> None:
    assert explain_wait(WaitFacts(sharded=False, started=False, ahead=3)) == Wait(
        "queued: 3 jobs of yours ahead", 4
    )
    assert explain_wait(WaitFacts(sharded=False, started=False, ahead=1)).reason == (  # type: ignore[union-attr]
        "queued: 1 job of yours ahead"
    )


def test_the_next_of_your_jobs_waits_for_a_free_worker() -> None:
    assert explain_wait(WaitFacts(sharded=False, started=False, ahead=0)) == Wait(
        "waiting for a free worker", 1
    )


def test_a_running_training_job_does_not_wait() -> None:
    assert explain_wait(WaitFacts(sharded=False, started=True, ahead=0)) is None


def test_unreleased_shards_wait_for_the_tenants_share_of_a_full_window() -> None:
    facts = WaitFacts(
        sharded=True, started=False, ahead=0, shards_waiting=5, tenant_in_flight=2, window_full=True
    )
    assert explain_wait(facts) == Wait(
        "tenant at its share of the shard window (2 shards of yours in flight)", 1
    )


def test_other_tenants_work_is_named_without_a_count() -> None:
    facts = WaitFacts(sharded=True, started=False, ahead=0, shards_waiting=5, window_full=True)
    wait = explain_wait(facts)
    assert wait is not None and "other tenants" in wait.reason and not any(c.isdigit() for c in wait.reason)


def test_released_shards_not_yet_running_wait_for_a_worker() -> None:
    facts = WaitFacts(sharded=True, started=False, ahead=0, shards_waiting=0, shards_released=2)
    assert explain_wait(facts) == Wait("waiting for a free worker")


def test_your_higher_priority_sampling_jobs_go_first() -> None:
    facts = WaitFacts(sharded=True, started=False, ahead=2, shards_waiting=5, window_full=True)
    assert explain_wait(facts) == Wait("queued: 2 jobs of yours ahead", 3)


def test_a_sampling_job_with_shards_running_is_moving() -> None:
    facts = WaitFacts(
        sharded=True, started=True, ahead=1, shards_waiting=5, shards_running=1, window_full=True
    )
    assert explain_wait(facts) is None


def test_queued_eta_counts_the_jobs_ahead_and_its_own_run() -> None:
    assert queued_eta(2, 10.0) == 30.0
    assert queued_eta(0, None) is None
