"""Lane routing (`broker.queue`): one rule that every publisher reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthjobs.broker.queue import (
    FINALIZE_TASK,
    SAMPLE_SHARD_TASK,
    TICK_TASK,
    TRAIN_TASK,
    all_queues,
    celery_config,
    parse_lanes,
    queue_for,
)
from synthjobs.settings import Settings


def test_shards_and_finalizer_go_to_the_sample_lane_the_rest_to_the_plain_queue(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, queue="q")
    assert [queue_for(task, settings) for task in (SAMPLE_SHARD_TASK, FINALIZE_TASK)] == ["q.sample"] * 2
    assert [queue_for(task, settings) for task in (TRAIN_TASK, TICK_TASK)] == ["q", "q"]
    assert all_queues(settings) == ["q", "q.sample"]


def test_celery_routes_every_task_by_the_same_rule(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, queue="q")
    routes = celery_config(settings)["task_routes"]
    assert routes and all(route["queue"] == queue_for(task, settings) for task, route in routes.items())


def test_lanes_are_parsed_in_order_without_repeats() -> None:
    assert parse_lanes(" sample , train,sample") == ["sample", "train"]


@pytest.mark.parametrize("text", ["", " , ", "train,gpu"])
def test_unknown_or_no_lanes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="lanes are train, sample"):
        parse_lanes(text)
