"""A worker SIGKILLed right after a job ends: its webhook event is still delivered, as one logical event."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from synthjobs.devtools import processes
from tests.support.webhook_receiver import Receiver, free_port

pytestmark = pytest.mark.faults


def test_sigkilled_worker_right_after_a_job_ends_still_delivers_exactly_one_logical_event(
    start_stack, kit
) -> None:
    receiver = Receiver(free_port(), status=503).start()  # up, but failing until the worker is dead
    try:
        env = {**kit.fast_recovery, "SYNTHJOBS_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}
        stack = start_stack(extra_env=env)
        auth = {"Authorization": f"Bearer {stack.env['SYNTHJOBS_ADMIN_TOKEN']}"}
        hook = httpx.post(
            f"{stack.api_url}/v1/webhooks",
            json={"url": receiver.url, "event_types": ["job.succeeded"]},
            headers=auth,
        )
        assert hook.status_code == 201, hook.text
        job = stack.client.submit_train(kit.train_body(2, "hooked"))
        kit.succeeded(stack, job["id"])
        processes.kill(stack.workers[0])  # SIGKILL: the outbox row is all that is left of the event
        receiver.status = 200
        stack.start_worker()

        deliveries_url = f"{stack.api_url}/v1/webhooks/{hook.json()['id']}/deliveries"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [delivery] = httpx.get(deliveries_url, headers=auth).json()
            if delivery["state"] == "delivered":
                break
            time.sleep(0.5)
        assert delivery["state"] == "delivered", delivery
        events = [json.loads(r.body) for r in receiver.requests]
        assert {e["id"] for e in events} == {delivery["event_id"]}  # retries carry the same id
        assert [e["data"]["id"] for e in events if e["type"] == "job.succeeded"] == [job["id"]] * len(events)
        assert sum(r.body == receiver.requests[-1].body for r in receiver.requests) == len(events)
    finally:
        receiver.stop()
