"""The lease heartbeat (`worker.context.LeaseKeeper`): it beats every third of the lease, says when the job
is no longer ours, survives a missed beat, and stops with its `with` block.

The beats run against a real (empty) SQLite file; `renew` is the test's own function, as the pipeline's
context passes its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from synthjobs.ledger.db import dispose_engines
from synthjobs.settings import Settings
from worker.context import LeaseKeeper

LEASE = 0.3  # beats every 0.1 s


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    home = tmp_path / "home"
    home.mkdir()
    yield Settings(home=home, lease_seconds=LEASE)
    dispose_engines()


class Beats:
    """A `renew` that counts its calls and answers as told (or raises)."""

    def __init__(self, answer: bool = True, fail_first: int = 0) -> None:
        self.answer, self.fail_first = answer, fail_first
        self.calls = 0
        self.sessions: list[Session] = []

    def __call__(self, session: Session) -> bool:
        self.calls += 1
        self.sessions.append(session)
        if self.calls <= self.fail_first:
            raise ConnectionError("database restarting")
        return self.answer


def _wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_beats_every_third_of_the_lease_with_a_session_each(settings: Settings) -> None:
    renew = Beats()
    started = time.monotonic()
    with LeaseKeeper(settings, renew) as keeper:
        _wait_for(lambda: renew.calls >= 3)
        elapsed = time.monotonic() - started
    assert elapsed >= 3 * LEASE / 3 * 0.9, "no beat before a third of the lease has passed"
    assert not keeper.lost
    assert len({id(s) for s in renew.sessions}) == len(renew.sessions), "one session per beat"


def test_a_refused_renewal_marks_the_lease_lost(settings: Settings) -> None:
    renew = Beats(answer=False)
    with LeaseKeeper(settings, renew) as keeper:
        assert not keeper.lost, "nothing is lost before the first beat"
        _wait_for(lambda: keeper.lost)


def test_a_failed_beat_is_logged_and_the_next_one_renews(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    renew = Beats(fail_first=2)
    with caplog.at_level(logging.WARNING, logger="worker.context"), LeaseKeeper(settings, renew) as keeper:
        _wait_for(lambda: renew.calls >= 4)
    assert not keeper.lost, "an error is not a refusal: the lease has slack for a missed beat"
    assert [r.getMessage() for r in caplog.records].count("could not renew a lease") == 2


def test_no_beat_after_the_block_ends(settings: Settings) -> None:
    renew = Beats()
    with LeaseKeeper(settings, renew):
        _wait_for(lambda: renew.calls >= 1)
    calls = renew.calls
    time.sleep(3 * LEASE / 3)
    assert renew.calls == calls
