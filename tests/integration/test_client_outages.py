"""`synthjobs wait` against the real stack while the API restarts: the wait rides over it.

The API process is stopped while a job is queued and a new one started on the same port; the client's wait
started before the restart returns the job's success instead of exiting 3.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from synthjobs.devtools import processes

pytestmark = pytest.mark.integration


def test_wait_rides_over_an_api_restart(start_stack: Any) -> None:
    stack = start_stack(workers=0)
    job = stack.client.submit_train({"dataset": "digits", "hyperparameters": {"epochs": 1}})
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["job"] = stack.client.wait(job["id"], timeout=240, poll=0.2, max_poll=1.0)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    processes.stop(stack.api)  # the API is gone: the wait sees refused connections
    port = int(stack.api_url.rsplit(":", 1)[1])
    stack.api = processes.start_api(stack.env, port, stack.logs / "api-restarted.log")
    processes.wait_for_api(stack.api_url, stack.api, timeout=60)
    stack.start_worker()
    waiter.join(timeout=300)
    assert not waiter.is_alive() and "error" not in outcome, f"{outcome}\n{stack.log_tail()}"
    assert outcome["job"]["state"] == "SUCCEEDED"
