"""How a job's failure reaches its user: a stable code always; the exception's text only when it is theirs.

`run_job` runs here in-process against an SQLite ledger, exactly as the Celery task calls it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from synthjobs.errors import JobFailure
from synthjobs.ledger import jobs
from synthjobs.ledger.db import dispose_engines, session_scope
from synthjobs.ledger.migrate import upgrade_database
from synthjobs.ledger.tables import JobKind
from synthjobs.settings import Settings, get_settings
from worker.context import JobContext
from worker.tasks import run_job


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated embedded-default ledger that `get_settings()` (and so the task) uses."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SYNTHJOBS_{name.upper()}", raising=False)
    monkeypatch.setenv("SYNTHJOBS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SYNTHJOBS_DEVICE", "cpu")
    get_settings.cache_clear()
    get_settings().ensure_home()
    url = get_settings().resolved_database_url()
    upgrade_database(url)
    yield url
    get_settings.cache_clear()
    dispose_engines()


def _run(url: str, error: Exception) -> dict[str, Any]:
    with session_scope(url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id

    def pipeline(ctx: JobContext) -> dict[str, Any]:
        raise error

    run_job(job_id, pipeline)
    with session_scope(url) as session:
        job = jobs.get_job(session, job_id)
        return {"state": job.state, "error": job.error, "error_code": job.error_code}


def test_an_unexpected_exception_shows_a_reference_not_its_text(
    ledger: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="worker.tasks"):
        job = _run(ledger, OSError("[Errno 28] No space left on device: '/srv/tenant-b/secret.npz'"))
    assert job["state"] == "FAILED" and job["error_code"] == "internal_error"
    match = re.fullmatch(r"internal error \(code: internal_error, reference ([0-9a-f]{12})\)", job["error"])
    assert match, job["error"]
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the traceback is in the log under the reference"
    assert "/srv/tenant-b" not in job["error"]


def test_an_expected_failure_keeps_its_readable_message(ledger: str) -> None:
    job = _run(ledger, JobFailure("dataset has 1 class; training needs at least 2"))
    assert job == {
        "state": "FAILED",
        "error": "dataset has 1 class; training needs at least 2",
        "error_code": "job_failed",
    }


def test_a_dataset_error_has_its_own_code(ledger: str) -> None:
    from training.data import DatasetError

    job = _run(ledger, DatasetError("labels must be integers"))
    assert (job["error"], job["error_code"]) == ("labels must be integers", "dataset_error")


def _failure_cases() -> list[tuple[BaseException, str]]:
    from synthjobs.errors import InvalidKey, InvalidRequest, ModelNotFound, ObjectNotFound
    from training.checkpoint import CheckpointError
    from training.data import DatasetError
    from training.train import TrainingDiverged

    return [
        (InvalidKey("key escapes its root"), "invalid_key"),
        (ObjectNotFound("no object models/x/checkpoint.pt"), "object_not_found"),
        (ModelNotFound("no model digits-cvae@champion"), "model_not_found"),
        (InvalidRequest(("per_class",), "per_class must be positive"), "invalid_request"),
        (TrainingDiverged("loss is NaN at epoch 3"), "training_diverged"),
        (CheckpointError("checkpoint is truncated"), "checkpoint_error"),
        (DatasetError("labels must be integers"), "dataset_error"),
        (JobFailure("max runtime exceeded (2s)"), "job_failed"),
        (KeyError("images"), "internal_error"),
    ]


@pytest.mark.parametrize(("error", "code"), _failure_cases(), ids=[code for _, code in _failure_cases()])
def test_each_expected_failure_maps_to_its_code_and_keeps_its_message(
    ledger: str, error: Exception, code: str
) -> None:
    job = _run(ledger, error)
    assert (job["state"], job["error_code"]) == ("FAILED", code)
    if code != "internal_error":
        assert job["error"] == str(error)


def test_a_subclass_maps_to_its_own_code_before_its_base() -> None:
    from synthjobs.errors import InvalidKey, StorageError
    from worker.tasks import failure_code

    assert failure_code(InvalidKey("../etc/passwd")) == "invalid_key", "InvalidKey is also a StorageError"
    assert failure_code(StorageError("bucket refused the write")) == "internal_error"


def test_a_lost_lease_records_nothing_the_new_owner_would_have_to_undo(ledger: str) -> None:
    from worker.context import LeaseLost

    job = _run(ledger, LeaseLost())
    assert (job["state"], job["error"], job["error_code"]) == ("RUNNING", None, None)


def test_a_noticed_cancel_ends_the_job_cancelled_without_an_error(ledger: str) -> None:
    from worker.context import JobCancelled

    job = _run(ledger, JobCancelled())
    assert (job["state"], job["error"], job["error_code"]) == ("CANCELLED", None, None)


def test_a_lasting_infrastructure_error_leaves_the_job_to_the_reconciler(ledger: str) -> None:
    job = _run(ledger, ConnectionError("storage unreachable after the retries"))
    assert (job["state"], job["error"], job["error_code"]) == ("RUNNING", None, None), (
        "not FAILED: its lease expires and the reconciler requeues it to resume"
    )
