"""Scheduled retraining end to end, with a clock set by `synthjobs tick --now` instead of waiting."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest

from synthjobs_client.errors import ClientError

pytestmark = pytest.mark.integration


def _tick(stack: Any, now: datetime) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synthjobs_client.cli", "tick", "--now", now.isoformat(), "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _schedule_body(epochs: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "nightly-digits",
        "cron": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "model_name": "digits-cvae",
        "train": {"dataset": "digits", "hyperparameters": {"epochs": epochs}, "seed": 3},
        "policy": {"min_tstr_gain": 0.005, "max_accuracy_drop": 0.02},
        **extra,
    }


def _succeeded(stack: Any, job_id: str) -> dict[str, Any]:
    try:
        return stack.client.wait(job_id, timeout=240, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _fire(stack: Any, schedule_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tick just after the schedule's next due time; return the finished job and the run it recorded."""
    schedule = stack.client.schedule(schedule_id)
    due = datetime.fromisoformat(schedule["next_due_at"])
    _tick(stack, due + timedelta(seconds=1))
    run = stack.client.schedule_runs(schedule_id)[0]
    assert datetime.fromisoformat(run["due_at"]) == due
    job = _succeeded(stack, run["job_id"])
    return job, stack.client.schedule_runs(schedule_id)[0]


def test_two_ticks_at_once_fire_a_due_time_once(start_stack, postgres_url, redis_url) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=redis_url)
    schedule = stack.client.create_schedule(_schedule_body(epochs=1))
    due = datetime.fromisoformat(schedule["next_due_at"]) + timedelta(seconds=2)
    ticks = [
        subprocess.Popen(
            [sys.executable, "-m", "synthjobs_client.cli", "tick", "--now", due.isoformat()], env=stack.env
        )
        for _ in range(2)
    ]
    assert [t.wait(60) for t in ticks] == [0, 0]
    runs = stack.client.schedule_runs(schedule["id"])
    assert len(runs) == 1
    _succeeded(stack, runs[0]["job_id"])
    assert len(stack.client.list(kind="train")["items"]) == 1


def test_scheduled_runs_promote_only_a_better_model_and_follow_up_on_promotion(start_stack) -> None:
    stack = start_stack()
    body = _schedule_body(epochs=1, sample={"per_class": 5})
    schedule_id = stack.client.create_schedule(body)["id"]

    first, run = _fire(stack, schedule_id)
    assert run["outcome"] == "promoted" and "first model" in run["decision"]["reason"]
    assert run["sample_job_id"] and _succeeded(stack, run["sample_job_id"])

    stack.client.update_schedule(schedule_id, {"train": body["train"] | {"hyperparameters": {"epochs": 40}}})
    second, run = _fire(stack, schedule_id)
    assert run["outcome"] == "promoted", run["decision"]["reason"]
    figures = run["decision"]["figures"]
    assert figures["challenger"]["tstr"] > figures["champion"]["tstr"]
    sample = _succeeded(stack, run["sample_job_id"])
    assert sample["result"]["model_id"] == second["result"]["model_id"], "the follow-up uses the new champion"

    stack.client.update_schedule(schedule_id, {"train": body["train"]})
    third, run = _fire(stack, schedule_id)
    assert run["outcome"] == "kept" and run["sample_job_id"] is None
    assert "kept champion" in run["decision"]["reason"]
    assert stack.client.model("digits-cvae@champion")["id"] == second["result"]["model_id"]
    assert [m["version"] for m in stack.client.models(name="digits-cvae")] == [3, 2, 1]

    history = stack.client.alias_history("digits-cvae", "champion")
    assert [h["to_model_id"] for h in history] == [second["result"]["model_id"], first["result"]["model_id"]]
    assert all(h["actor"].startswith("promotion") for h in history)
    rolled = stack.client.rollback_alias("digits-cvae", "champion")
    assert rolled["model_id"] == first["result"]["model_id"]


def test_invalid_cron_is_rejected_naming_the_field(start_stack) -> None:
    stack = start_stack(workers=0)
    for field, value in (("cron", "61 * * * *"), ("timezone", "Mars/Base")):
        with pytest.raises(ClientError) as info:
            stack.client.create_schedule(_schedule_body(epochs=1) | {field: value})
        assert info.value.status == 422 and info.value.detail[0]["loc"] == ["body", field]
        assert info.value.message.startswith(f"{field}: ")


def test_unchanged_data_is_not_retrained_when_the_policy_says_so(start_stack) -> None:
    stack = start_stack()
    body = _schedule_body(epochs=1)
    body["policy"] = {"skip_unchanged_data": True}
    schedule_id = stack.client.create_schedule(body)["id"]
    first, run = _fire(stack, schedule_id)
    assert run["outcome"] == "promoted"
    second, run = _fire(stack, schedule_id)
    assert run["outcome"] == "skipped" and "data unchanged" in run["decision"]["reason"]
    assert second["result"]["skipped"] is True
    assert [m["version"] for m in stack.client.models(name="digits-cvae")] == [1]


def test_a_schedules_priority_is_given_to_the_jobs_it_creates(start_stack) -> None:
    stack = start_stack()
    body = _schedule_body(epochs=1, sample={"per_class": 2, "quality_samples": 0}, priority="high")
    schedule = stack.client.create_schedule(body)
    assert schedule["priority"] == "high"
    job, run = _fire(stack, schedule["id"])
    assert job["priority"] == "high" and run["outcome"] == "promoted"
    assert _succeeded(stack, run["sample_job_id"])["priority"] == "high"
    assert stack.client.update_schedule(schedule["id"], {"priority": "low"})["priority"] == "low"
    job, _ = _fire(stack, schedule["id"])
    assert job["priority"] == "low"
    with pytest.raises(ClientError) as info:
        stack.client.update_schedule(schedule["id"], {"priority": "urgent"})
    assert info.value.status == 422 and info.value.detail[0]["loc"] == ["body", "priority"]
