"""The hand-off thread: one shard tail at a time, the next submit waiting for the one before."""

from __future__ import annotations

import threading
import time

import pytest

from synthjobs.logs import current_context, log_context
from worker.handoff import Handoff


def test_submit_waits_for_the_tail_before_so_one_is_in_flight_at_a_time() -> None:
    handoff, release, order = Handoff(), threading.Event(), []
    handoff.submit(lambda: (release.wait(10), order.append("first")))
    second = threading.Thread(
        target=lambda: (handoff.submit(lambda: order.append("second")), order.append("in"))
    )
    second.start()
    time.sleep(0.2)
    assert order == [] and second.is_alive(), "a second tail was taken while the first was running"
    release.set()
    second.join(10)
    assert handoff.drain(timeout=10)
    assert order[0] == "first" and sorted(order) == ["first", "in", "second"]


def test_drain_says_when_a_tail_is_still_running_after_its_timeout() -> None:
    handoff, release = Handoff(), threading.Event()
    handoff.submit(lambda: release.wait(10) and None)
    assert handoff.drain(timeout=0.05) is False
    release.set()
    assert handoff.drain(timeout=10) is True
    assert handoff.drain() is True  # nothing in flight


def test_a_tail_that_raises_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    handoff, ran = Handoff(), []

    def broken() -> None:
        raise RuntimeError("tail broke")

    handoff.submit(broken)
    handoff.submit(lambda: ran.append(True))
    assert handoff.drain(timeout=10) and ran == [True]
    assert any("tail broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_tail_runs_in_the_submitters_log_context() -> None:
    handoff, seen = Handoff(), []
    with log_context(job_id="job-1", shard=3):
        handoff.submit(lambda: seen.append(dict(current_context())))
    assert handoff.drain(timeout=10)
    assert seen == [{"job_id": "job-1", "shard": 3}]
