"""One per-tenant policy (`rules.tenant_policy`): the limits the submit refuses by and the weight fair share
gives, with per-tenant overrides over the deployment's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from synthjobs.rules.tenant_policy import OverQuota, policy_for, refusal, weights
from synthjobs.settings import Settings


def _settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings(home=tmp_path, max_concurrent_jobs=10, max_submits_per_minute=100, **fields)  # type: ignore[arg-type]


def test_a_tenant_without_an_override_has_the_deployments_defaults(tmp_path: Path) -> None:
    policy = policy_for(_settings(tmp_path), "acme")
    assert (policy.weight, policy.max_concurrent_jobs, policy.max_submits_per_minute) == (1.0, 10, 100)


def test_an_override_changes_only_what_it_names(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tenant_policies={"acme": {"weight": 3, "max_concurrent_jobs": 2}})
    acme, other = policy_for(settings, "acme"), policy_for(settings, "globex")
    assert (acme.weight, acme.max_concurrent_jobs, acme.max_submits_per_minute) == (3.0, 2, 100)
    assert (other.weight, other.max_concurrent_jobs) == (1.0, 10)


def test_the_submit_refusal_and_the_dispatchers_weights_read_the_same_policy(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        tenant_weights={"old": 2.0},
        tenant_policies={"acme": {"weight": 4, "max_concurrent_jobs": 2}},
    )
    assert weights(settings) == {"acme": 4.0, "old": 2.0}
    assert refusal(policy_for(settings, "acme"), 2, 0) == OverQuota(
        "2 jobs queued or running; the limit is 2", 30
    )
    assert refusal(policy_for(settings, "globex"), 2, 0) is None
    assert refusal(policy_for(settings, "globex"), 0, 100) == OverQuota(
        "more than 100 submissions in the last minute", 60
    )


def test_a_policy_weight_wins_over_the_older_weight_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tenant_weights={"acme": 2.0}, tenant_policies={"acme": {"weight": 5}})
    assert policy_for(settings, "acme").weight == 5.0


@pytest.mark.parametrize("override", [{"weight": 0}, {"max_concurrent_jobs": 0}, {"colour": "red"}])
def test_an_unbounded_or_unknown_override_is_refused_at_start_up(tmp_path: Path, override: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        _settings(tmp_path, tenant_policies={"acme": override})
