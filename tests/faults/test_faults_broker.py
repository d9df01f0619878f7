"""The broker loses messages, refuses them, or stops answering: SQL still holds every job and all complete."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = pytest.mark.faults

PAUSE_SECONDS = 30
ANSWER_WITHIN = 15


def _queued_messages(redis_server: Any, queue: str) -> int:
    """Messages waiting in a kombu queue (its list key, and the priority lists kombu may add)."""
    client = redis_server.client()
    try:
        return sum(
            int(client.llen(key))
            for key in client.scan_iter(match=f"{queue}*")
            if client.type(key) == b"list"
        )
    finally:
        client.close()


def test_queued_jobs_whose_messages_died_with_redis_are_republished(
    postgres_url, private_redis, start_stack, kit, scenario
) -> None:
    stack = start_stack(
        database_url=postgres_url, broker_url=private_redis.url, workers=0, extra_env=kit.fast_recovery
    )
    row = scenario("4 redis restarted, queue lost", stack)
    names = ["f4-lost-a", "f4-lost-b"]
    jobs = [row.track(stack.client.submit_train(kit.train_body(40, name)), name) for name in names]
    queue = stack.env["SYNTHJOBS_QUEUE"]
    assert _queued_messages(private_redis, queue) == 2
    row.inject()
    private_redis.restart()
    assert _queued_messages(private_redis, queue) == 0, "a restart without persistence loses the messages"
    row.note = "2 messages lost with the restart"
    stack.start_worker()

    done = [kit.succeeded(stack, job["id"]) for job in jobs]
    unrecorded = [job["id"] for job in jobs if "republished" not in kit.kinds(stack, job["id"])]
    assert not unrecorded, f"republished without a 'republished' event in their history: {unrecorded}"
    assert [d["attempts"] for d in done] == [1, 1]
    assert [kit.kinds(stack, job["id"]).count("claimed") for job in jobs] == [1, 1]
    reference = kit.train(stack, 40, "f4-reference")
    for finished, name in zip(done, names, strict=True):
        kit.assert_same_training(finished, reference)
        kit.assert_one_version(stack, name)
    kit.assert_nothing_open(stack)


def test_job_committed_while_the_broker_refuses_is_accepted_and_completes_later(
    postgres_url, private_redis, tcp_proxy, start_stack, kit, scenario
) -> None:
    proxy = tcp_proxy("127.0.0.1", private_redis.port)
    broker = f"redis://127.0.0.1:{proxy.port}/0"
    stack = start_stack(database_url=postgres_url, broker_url=broker, extra_env=kit.fast_recovery)
    kit.worker_ready(stack, 0)
    row = scenario("5 publish fails (broker reset)", stack)
    row.inject()
    proxy.reset()
    status, job, took = kit.post_timed(stack, "/v1/jobs/train", kit.train_body(40, "f5-unsent"), 30)
    row.note = f"POST answered {status} in {took:.2f}s"
    assert status == 202, (status, job, kit.tail(stack))
    assert took < ANSWER_WITHIN, f"POST took {took:.1f}s with the broker down"
    row.track(job, "f5-unsent")
    assert job["state"] == "QUEUED"
    assert _queued_messages(private_redis, stack.env["SYNTHJOBS_QUEUE"]) == 0, "nothing was published"
    time.sleep(2)
    assert stack.client.get(job["id"])["state"] == "QUEUED", "SQL keeps the job while the broker is down"
    proxy.pass_()

    done = kit.succeeded(stack, job["id"])
    assert done["attempts"] == 1
    reference = kit.train(stack, 40, "f5-reference")
    kit.assert_same_training(done, reference)
    kit.assert_one_version(stack, "f5-unsent")
    kit.assert_nothing_open(stack)


def test_submits_while_redis_is_paused_answer_in_bounded_time_and_complete(
    postgres_url, private_redis, start_stack, kit, scenario
) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=private_redis.url, extra_env=kit.fast_recovery)
    kit.worker_ready(stack, 0)
    row = scenario("10 redis SIGSTOP 30s during submits", stack)
    names = [f"f10-paused-{i}" for i in range(4)]
    row.inject()
    private_redis.pause()
    paused_at = time.monotonic()
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(
                pool.map(
                    lambda name: kit.post_timed(stack, "/v1/jobs/train", kit.train_body(30, name), 40),
                    names,
                )
            )
        time.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - paused_at)))
    finally:
        private_redis.resume()

    statuses = sorted(str(status) for status, _, _ in answers)
    row.note = f"POSTs {' '.join(statuses)}, slowest {max(took for _, _, took in answers):.1f}s"
    accepted = []
    for name, (status, body, took) in zip(names, answers, strict=True):
        assert status is not None, f"{name}: the POST hung: {body}"
        assert took < ANSWER_WITHIN, f"{name}: answered {status} after {took:.1f}s"
        assert status in (202, 503), f"{name}: {status} {body}"
        if status == 202:
            assert body["state"] == "QUEUED"
            accepted.append((row.track(body, name), name))
        else:
            assert "broker" in str(body).lower(), f"a 503 must say what is down: {body}"

    done = [(kit.succeeded(stack, job["id"], timeout=120), name) for job, name in accepted]
    for finished, _ in done:
        assert finished["attempts"] == 1, "republished messages must not run a job twice"
        assert kit.kinds(stack, finished["id"]).count("claimed") == 1
    reference = kit.train(stack, 30, "f10-reference")
    for finished, name in done:
        kit.assert_same_training(finished, reference)
        kit.assert_one_version(stack, name)
    kit.assert_nothing_open(stack)


def test_broker_restarted_while_the_shard_window_is_held_still_completes_the_same_bytes(
    postgres_url, private_redis, start_stack, kit, scenario
) -> None:
    window = 2
    env = {**kit.fast_recovery, "SYNTHJOBS_SHARD_WINDOW": str(window)}
    stack = start_stack(database_url=postgres_url, broker_url=private_redis.url, extra_env=env)
    model_id = kit.train(stack, 2, "f4w-model")["result"]["model_id"]
    stack.stop_workers()
    row = scenario("4w redis restarted, shard window held", stack)
    body = {"model": model_id, "per_class": 6, "shard_size": 10, "seed": 4, "quality_samples": 0}
    job = row.track(stack.client.submit_sample(body))
    queue = stack.env["SYNTHJOBS_QUEUE"]
    assert _queued_messages(private_redis, queue) == window, "only the window is published, not all 6"
    row.inject()
    private_redis.restart()
    assert _queued_messages(private_redis, queue) == 0
    row.note = f"the {window} released shards' messages lost"
    stack.start_worker()

    done = kit.succeeded(stack, job["id"], timeout=180)
    reference = kit.succeeded(stack, stack.client.submit_sample(body)["id"], timeout=180)
    digests = [
        [(s["index"], s["sha256"]) for s in stack.client.get(j["id"])["shards"]] for j in (done, reference)
    ]
    assert len(digests[0]) == 6 and digests[0] == digests[1]
    kit.assert_nothing_open(stack)
