"""A private job that cannot run fails with a readable reason and its own error code, not as internal."""

from __future__ import annotations

from training.dp import DPUnavailable, PrivacyBudgetExceeded
from worker.tasks import report_failure


def test_missing_opacus_fails_the_job_with_the_install_hint() -> None:
    message = "asks for differential privacy but Opacus is not installed; pip install 'synthjobs[dp]'"
    assert report_failure(DPUnavailable(message), "job x") == (message, "dp_unavailable")


def test_exceeded_budget_fails_the_job_with_the_figure() -> None:
    message = "privacy budget exceeded at epoch 3: epsilon spent 1.2000 > target 1.0 (delta 1e-05)"
    assert report_failure(PrivacyBudgetExceeded(message), "job x") == (message, "privacy_budget_exceeded")
