"""Storage and the SQL ledger drop their connections mid-job: the job is retried and completes unchanged."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.faults

S3_OUTAGE_SECONDS = 3
SQL_OUTAGE_SECONDS = 2


def test_s3_down_mid_upload_is_retried_and_the_manifest_matches(
    postgres_url, redis_url, s3_endpoint, s3_bucket, s3_client, tcp_proxy, start_stack, kit, scenario
) -> None:
    moto = urlparse(s3_endpoint)
    proxy = tcp_proxy("127.0.0.1", int(moto.port or 80))
    stack = start_stack(
        database_url=postgres_url,
        broker_url=redis_url,
        storage_url=f"s3://{s3_bucket}/svc",
        s3_endpoint=f"http://127.0.0.1:{proxy.port}",
        extra_env=kit.fast_recovery,
    )
    row = scenario("6 S3 reset 3s mid-upload", stack)
    model_id = kit.train(stack, 3, "f6-model", seed=5)["result"]["model_id"]
    body = {"model": model_id, "per_class": 6_000, "seed": 4, "shard_size": 1_000}
    job = row.track(stack.client.submit_sample(body))

    def shards_done() -> int:
        return sum(s["state"] == "DONE" for s in stack.client.get(job["id"])["shards"])

    kit.wait_for(lambda: shards_done() >= 3, stack, what="3 shards written")
    row.inject()
    dropped = proxy.reset()
    done_at_reset = shards_done()
    row.note = f"{dropped} connections reset with {done_at_reset}/60 shards done"
    assert done_at_reset < 60, "the outage must land while shards are in flight"
    time.sleep(S3_OUTAGE_SECONDS)
    proxy.pass_()

    done = kit.succeeded(stack, job["id"], timeout=120)
    reference = kit.succeeded(stack, stack.client.submit_sample(body)["id"])
    assert kit.shard_digests(done, s3_client) == kit.shard_digests(reference, s3_client)
    assert kit.manifest(done, s3_client)["produced_per_class"] == [6_000] * 10
    assert kit.kinds(stack, job["id"]).count("finalizing") == 1
    listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"svc/jobs/{job['id']}/shard-")
    assert [o["Key"].rsplit("/", 1)[1] for o in listing.get("Contents", [])] == [
        f"shard-{i:05d}.npz" for i in range(60)
    ]
    kit.assert_nothing_open(stack)


def test_sql_connections_dropped_mid_training_are_retried_and_the_job_completes(
    postgres_url, redis_url, tcp_proxy, start_stack, kit, scenario
) -> None:
    url = make_url(postgres_url)
    proxy = tcp_proxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = {**kit.fast_recovery, "SYNTHJOBS_LEASE_SECONDS": "10"}
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, workers=0, extra_env=env)
    kit.start_worker_with(stack, SYNTHJOBS_DATABASE_URL=proxied)
    row = scenario("7 PostgreSQL reset 2s mid-training", stack)
    job = row.track(stack.client.submit_train(kit.train_body(200, "f7-sql")), "f7-sql")
    kit.wait_for(lambda: kit.epoch_of(stack.client.get(job["id"])) >= 30, stack, what="epoch 30")
    row.inject()
    dropped = proxy.reset()
    row.note = f"{dropped} connections reset at epoch {kit.epoch_of(stack.client.get(job['id']))}"
    assert dropped >= 1, "the worker holds pooled connections; the reset must cut them"
    time.sleep(SQL_OUTAGE_SECONDS)
    proxy.pass_()

    done = kit.succeeded(stack, job["id"], timeout=120)
    row.note += f", attempts {done['attempts']}"
    assert done["attempts"] == 1, "retried in the worker, not requeued after the lease expired"
    reference = kit.train(stack, 200, "f7-reference")
    kit.assert_same_training(done, reference)
    kit.assert_one_version(stack, "f7-sql")
    kit.assert_nothing_open(stack)
