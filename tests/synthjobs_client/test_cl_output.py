"""How the CLI shows a job: why it waits, its place in line and its ETA."""

from __future__ import annotations

from synthjobs_client.output import describe, format_seconds

JOB = {"id": "j1", "kind": "train", "state": "QUEUED", "phase": "queued", "progress": 0.0}


def test_status_shows_why_a_job_waits_its_position_and_eta() -> None:
    job = {**JOB, "wait": {"reason": "queued: 2 jobs of yours ahead", "position": 3}, "eta_seconds": 200.0}
    assert describe(job).splitlines()[1:] == [
        "waiting: queued: 2 jobs of yours ahead (position 3)",
        "eta: 3m 20s",
    ]


def test_status_of_a_job_that_does_not_wait_has_no_wait_line() -> None:
    assert describe({**JOB, "state": "SUCCEEDED", "wait": None}).count("\n") == 0


def test_seconds_read_at_a_glance() -> None:
    assert [format_seconds(s) for s in (4.4, 200, 7500)] == ["4s", "3m 20s", "2h 05m"]
