"""Workers that die, stop, or get the same task twice: every job still ends as an undisturbed run would."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from synthjobs.broker.queue import TRAIN_TASK, make_sender
from synthjobs.devtools import processes
from synthjobs.settings import Settings

pytestmark = pytest.mark.faults


def test_sigkilled_worker_mid_training_resumes_from_its_checkpoint(
    postgres_url, redis_url, start_stack, kit, scenario
) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=kit.fast_recovery)
    row = scenario("1 SIGKILL worker mid-training", stack)
    job = row.track(stack.client.submit_train(kit.train_body(150, "f1-killed")), "f1-killed")
    kit.wait_for(lambda: kit.epoch_of(stack.client.get(job["id"])) >= 30, stack, what="epoch 30")
    epoch_at_kill = kit.epoch_of(stack.client.get(job["id"]))
    row.inject()
    processes.kill(stack.workers[0])
    stack.start_worker()

    done = kit.succeeded(stack, job["id"])
    assert done["attempts"] == 2
    events = stack.client.events(job["id"])
    resumed = [e for e in events if e["kind"] == "resumed"]
    row.note = f"killed at epoch {epoch_at_kill}, resumed from {[e['data']['epoch'] for e in resumed]}"
    assert len(resumed) == 1 and resumed[0]["data"]["epoch"] >= epoch_at_kill - 1, resumed
    assert [e["kind"] for e in events].count("claimed") == 2

    reference = kit.train(stack, 150, "f1-reference")
    kit.assert_same_training(done, reference)
    kit.assert_one_version(stack, "f1-killed")
    kit.assert_nothing_open(stack)


def test_sigkilled_worker_while_shards_are_in_flight_still_gives_the_undisturbed_shards(
    postgres_url, redis_url, start_stack, kit, scenario
) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=kit.fast_recovery)
    row = scenario("2 SIGKILL worker mid-sampling", stack)
    model_id = kit.train(stack, 3, "f2-model", seed=5)["result"]["model_id"]
    body = {"model": model_id, "per_class": 20_000, "seed": 4, "shard_size": 5_000}
    job = row.track(stack.client.submit_sample(body))

    def running_after_three_done() -> bool:
        states = [s["state"] for s in stack.client.get(job["id"])["shards"]]
        return states.count("DONE") >= 3 and "RUNNING" in states

    # The kill lands while a shard is RUNNING (claimed, being written), not at a random moment between two:
    # the worker is frozen (SIGSTOP) and the ledger read; killed only when a shard is RUNNING, else thawed.
    worker = stack.workers[0]
    for _ in range(50):
        kit.wait_for(running_after_three_done, stack, what="3 shards written and one RUNNING")
        os.killpg(worker.pid, signal.SIGSTOP)
        frozen = stack.client.get(job["id"])["shards"]  # the worker is stopped: this is where it stands
        if any(s["state"] == "RUNNING" for s in frozen):
            break
        os.killpg(worker.pid, signal.SIGCONT)  # it was between two shards: let it claim the next one
    row.inject()
    processes.kill(worker)
    done_at_kill = sum(s["state"] == "DONE" for s in frozen)
    in_flight = [s["index"] for s in frozen if s["state"] == "RUNNING"]
    row.note = f"killed with {done_at_kill}/40 shards done, shards {in_flight} in flight"
    assert done_at_kill < 40 and in_flight, "the kill must land while a shard is RUNNING"
    stack.start_worker()

    done = kit.succeeded(stack, job["id"])
    requeued = [e["message"] for e in stack.client.events(job["id"]) if e["kind"] == "requeued"]
    assert any(f"shard {in_flight[0]}:" in m for m in requeued), requeued
    reference = kit.succeeded(stack, stack.client.submit_sample(body)["id"])
    assert kit.shard_digests(done) == kit.shard_digests(reference)
    assert kit.manifest(done)["produced_per_class"] == [20_000] * 10
    assert kit.kinds(stack, job["id"]).count("finalizing") == 1
    stored = sorted(p.name for p in stack.stored_path(done["result"]["manifest_uri"]).parent.iterdir())
    assert [n for n in stored if n.startswith("shard-")] == [f"shard-{i:05d}.npz" for i in range(40)]
    kit.assert_nothing_open(stack)


def test_same_task_delivered_to_two_workers_runs_the_job_once(
    postgres_url, redis_url, start_stack, kit, scenario
) -> None:
    stack = start_stack(
        database_url=postgres_url, broker_url=redis_url, workers=2, extra_env=kit.fast_recovery
    )
    kit.worker_ready(stack, 0)
    kit.worker_ready(stack, 1)
    row = scenario("3 same task to two workers", stack)
    sender = make_sender(Settings(broker_url=redis_url))
    try:
        job = row.track(stack.client.submit_train(kit.train_body(60, "f3-twice")), "f3-twice")
        row.inject()
        sender.send_task(TRAIN_TASK, kwargs={"job_id": job["id"]}, queue=stack.env["SYNTHJOBS_QUEUE"])
    finally:
        sender.close()

    done = kit.succeeded(stack, job["id"])
    logs = [stack.logs / f"worker{i}.log" for i in range(2)]
    noop = f"job {job['id']} is not claimable; this delivery does nothing"
    kit.wait_for(
        lambda: any(noop in log.read_text(errors="replace") for log in logs),
        stack,
        what="the duplicate's no-op",
    )
    received = [len(re.findall(rf"Task {TRAIN_TASK}\[[^\]]+\] received", log.read_text())) for log in logs]
    row.note = f"deliveries per worker {received}"
    assert sum(received) >= 2, f"both messages delivered: {received}"
    assert done["attempts"] == 1
    assert kit.kinds(stack, job["id"]).count("claimed") == 1

    reference = kit.train(stack, 60, "f3-reference")
    kit.assert_same_training(done, reference)
    kit.assert_one_version(stack, "f3-twice")
    kit.assert_nothing_open(stack)


def test_sigterm_checkpoints_and_hands_the_job_to_another_worker(
    postgres_url, redis_url, start_stack, kit, scenario
) -> None:
    env = {**kit.fast_recovery, "SYNTHJOBS_CHECKPOINT_MIN_INTERVAL": "30"}
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=env)
    row = scenario("8 SIGTERM worker mid-training", stack)
    job = row.track(stack.client.submit_train(kit.train_body(200, "f8-stopped")), "f8-stopped")
    kit.wait_for(lambda: kit.epoch_of(stack.client.get(job["id"])) >= 30, stack, what="epoch 30")
    epoch_at_stop = kit.epoch_of(stack.client.get(job["id"]))
    row.inject()
    started = time.monotonic()
    assert processes.stop(stack.workers[0], timeout=30) == 0
    took = time.monotonic() - started
    row.note = f"stopped at epoch {epoch_at_stop} in {took:.1f}s"
    assert took < 15, "a warm shutdown must not wait for the whole job"
    assert stack.client.get(job["id"])["state"] == "QUEUED", "the job is handed back, not left RUNNING"
    stack.start_worker()

    done = kit.succeeded(stack, job["id"])
    assert done["attempts"] == 2
    resumed = [e for e in stack.client.events(job["id"]) if e["kind"] == "resumed"]
    row.note += f", resumed from {[e['data']['epoch'] for e in resumed]}"
    assert len(resumed) == 1 and resumed[0]["data"]["epoch"] >= epoch_at_stop, "the checkpoint at the stop"

    reference = kit.train(stack, 200, "f8-reference")
    kit.assert_same_training(done, reference)
    kit.assert_one_version(stack, "f8-stopped")
    kit.assert_nothing_open(stack)


def test_job_whose_worker_always_dies_fails_after_max_attempts(
    postgres_url, redis_url, start_stack, kit, scenario
) -> None:
    env = {**kit.fast_recovery, "SYNTHJOBS_MAX_ATTEMPTS": "2"}
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=env)
    row = scenario("9 worker dies every time (max 2)", stack, expect="FAILED")
    job = row.track(stack.client.submit_train(kit.train_body(1000, "f9-poison")))
    for attempt in (1, 2):

        def claimed(attempt: int = attempt) -> bool:
            now = stack.client.get(job["id"])
            return now["state"] == "RUNNING" and now["attempts"] == attempt

        kit.wait_for(claimed, stack, what=f"attempt {attempt} to be claimed")
        if attempt == 1:
            row.inject()
        processes.kill(stack.workers[-1])
        stack.start_worker()

    failed = kit.terminal(stack, job["id"])
    row.note = str(failed["error"])[:60]
    assert failed["state"] == "FAILED", failed
    assert "worker lost 2 times" in (failed["error"] or ""), failed["error"]
    assert failed["attempts"] == 2
    assert kit.kinds(stack, job["id"]).count("claimed") == 2
    assert stack.client.models(name="f9-poison") == []
    kit.assert_nothing_open(stack)
