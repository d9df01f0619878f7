"""Schedules obey tenant limits: a cap on how many a tenant has, and the job quota at every firing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import utcnow
from synthjobs.ledger.tokens import create_token
from synthjobs.maintenance import tick as schedule_tick

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}


def _schedule(name: str, cron: str = "0 3 * * *") -> dict[str, object]:
    return {"name": name, "cron": cron, "model_name": "digits-cvae", "train": TRAIN}


def test_creating_schedules_past_the_tenant_cap_is_refused_with_409(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api(max_schedules_per_tenant=3)
    made = [api.post("/v1/schedules", json=_schedule(f"s{i}")) for i in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    api.patch(f"/v1/schedules/{made[0].json()['id']}", json={"paused": True}).raise_for_status()
    refused = api.post("/v1/schedules", json=_schedule("one-too-many"))
    assert refused.status_code == 409, refused.text
    assert "3 schedules" in refused.json()["detail"] and "limit is 3" in refused.json()["detail"]
    assert [s["name"] for s in api.get("/v1/schedules").json()] == ["s0", "s1", "s2"]
    with session_scope(ledger_url(api)) as session:
        other = {"Authorization": f"Bearer {create_token(session, 'globex')}"}
    assert api.post("/v1/schedules", json=_schedule("s0"), headers=other).status_code == 201  # per tenant
    assert api.delete(f"/v1/schedules/{made[1].json()['id']}").status_code == 204
    assert api.post("/v1/schedules", json=_schedule("one-too-many")).status_code == 201


def test_a_firing_over_the_job_quota_shows_as_skipped_in_the_runs(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_concurrent_jobs=2)
    ids = [api.post("/v1/schedules", json=_schedule(f"m{i}", "* * * * *")).json()["id"] for i in range(3)]
    state = api.app.state  # type: ignore[attr-defined]
    created = schedule_tick.tick(state.settings, state.sender, now=utcnow() + timedelta(minutes=1))
    assert len(created) == 2 and len(api.get("/v1/jobs").json()["items"]) == 2
    runs = [run for i in ids for run in api.get(f"/v1/schedules/{i}/runs").json()]
    (skipped,) = [run for run in runs if run["job_id"] is None]
    assert skipped["outcome"] == "skipped"
    assert skipped["decision"] == {"reason": "over quota: 2 jobs queued or running; the limit is 2"}
    assert sorted(run["job_id"] for run in runs if run["job_id"]) == sorted(created)
