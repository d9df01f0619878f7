"""Bad input: corrupt or malicious model files, a dataset file that is not an image, hostile names."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.faults

# One hostile value of each kind, shaped for the field it is sent in ({root}: the configured data root).
HOSTILE = {
    "dot-dot": {"name": "../evil", "url": "file://{root}/../../etc", "root": "{root}/../../etc"},
    "encoded dot-dot": {"name": "%2e%2e/evil", "url": "file://{root}/.%2e/.%2e/etc", "root": "%2e%2e/evil"},
    "absolute": {"name": "/etc/passwd", "url": "file:///etc", "root": "/etc"},
    "NUL": {"name": "evil\x00name", "url": "s3://bucket/evil\x00name", "root": "{root}/evil\x00name"},
    "5 KB": {"name": "a" * 5000, "url": "s3://bucket/" + "a" * 5000, "root": "{root}/" + "a" * 5000},
}


class PlantedPickle:
    """Unpickling this runs a shell command that creates `sentinel`: what a planted checkpoint would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.sentinel}",))


def _planted_checkpoint(sentinel: Path) -> bytes:
    """A torch.save file shaped like a checkpoint whose config unpickles into code execution."""
    import torch

    buffer = io.BytesIO()
    torch.save({"format_version": 2, "config": PlantedPickle(sentinel), "model_state": {}}, buffer)
    return buffer.getvalue()


def _checkpoint_path(stack: Any, job: dict) -> Path:
    return Path(stack.stored_path(job["result"]["checkpoint_uri"]))


def test_corrupt_and_malicious_checkpoints_fail_sampling_without_running_code(
    postgres_url, redis_url, tmp_path, start_stack, kit, scenario
) -> None:
    import torch

    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=kit.fast_recovery)
    corrupt = scenario("bad input: corrupt checkpoint", stack, expect="FAILED")
    planted = scenario("bad input: planted pickle", stack, expect="FAILED")
    corrupt_model = kit.train(stack, 1, "f-corrupt")
    pickle_model = kit.train(stack, 1, "f-pickle")

    payload = bytearray(_checkpoint_path(stack, corrupt_model).read_bytes())
    payload[len(payload) // 3 : len(payload) // 3 + 4096] = os.urandom(4096)
    _checkpoint_path(stack, corrupt_model).write_bytes(bytes(payload))
    sentinel = tmp_path / "pwned"
    _checkpoint_path(stack, pickle_model).write_bytes(_planted_checkpoint(sentinel))
    control = tmp_path / "control"
    torch.load(io.BytesIO(_planted_checkpoint(control)), weights_only=False)
    assert control.exists(), "the payload does run code when loaded unsafely (positive control)"

    for row, model in ((corrupt, corrupt_model), (planted, pickle_model)):
        body = {"model": model["result"]["model_id"], "per_class": 5, "seed": 1}
        job = row.track(stack.client.submit_sample(body))
        failed = kit.terminal(stack, job["id"])
        assert failed["state"] == "FAILED", failed
        error = failed["error"] or ""
        row.note = error[:60]
        assert "checkpoint" in error.lower() and "internal error" not in error, error
    assert not sentinel.exists(), "the planted pickle ran code in the worker"
    kit.assert_nothing_open(stack)


def test_dataset_file_that_is_not_an_image_fails_training_naming_it(
    postgres_url, redis_url, tmp_path, start_stack, kit, scenario
) -> None:
    from PIL import Image

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for class_name in ("circle", "square"):
        (root / "shapes" / class_name).mkdir(parents=True)
        for index in range(6):
            pixels = (rng.random((16, 16)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "shapes" / class_name / f"img-{index}.png")
    (root / "shapes" / "square" / "notes.png").write_text("these are my notes, not a picture\n")
    env = {**kit.fast_recovery, "SYNTHJOBS_DATA_ROOTS": json.dumps([str(root)])}
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, extra_env=env)
    row = scenario("bad input: not an image", stack, expect="FAILED")
    body = {
        "dataset": {"kind": "image_folder", "url": (root / "shapes").as_uri()},
        "hyperparameters": {"epochs": 1},
        "model_name": "f-not-an-image",
    }
    job = row.track(stack.client.submit_train(body))
    failed = kit.terminal(stack, job["id"])
    row.note = str(failed["error"])[:60]
    assert failed["state"] == "FAILED", failed
    assert "square/notes.png" in (failed["error"] or ""), failed["error"]
    assert "internal error" not in failed["error"]
    assert stack.client.models(name="f-not-an-image") == []


def _refusals(stack: Any, requests: dict[str, Callable[[dict[str, str]], httpx.Response]], root: Path) -> str:
    """Send every request with every hostile value; describe each answer that is not a 422 ('' if none)."""
    wrong = []
    for case, values in HOSTILE.items():
        shaped = {field: value.replace("{root}", str(root)) for field, value in values.items()}
        for where, send in requests.items():
            response = send(shaped)
            if response.status_code != 422:
                wrong.append(f"{case} in {where}: {response.status_code} {response.text[:160]}")
    return "\n".join(wrong)


def test_hostile_names_and_paths_in_queries_and_bodies_are_refused_with_422(start_stack, tmp_path) -> None:
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    stack = start_stack(workers=0, extra_env={"SYNTHJOBS_DATA_ROOTS": json.dumps([str(root)])})
    http = stack.client._http
    requests = {
        "GET /v1/models?name=": lambda v: http.get("/v1/models", params={"name": v["name"]}),
        "train model_name": lambda v: http.post("/v1/jobs/train", json={"model_name": v["name"]}),
        "image_folder url": lambda v: http.post(
            "/v1/jobs/train", json={"dataset": {"kind": "image_folder", "url": v["url"]}}
        ),
        "torchvision root": lambda v: http.post(
            "/v1/jobs/train", json={"dataset": {"kind": "torchvision", "name": "MNIST", "root": v["root"]}}
        ),
    }
    wrong = _refusals(stack, requests, root)
    assert not wrong, f"not refused with 422:\n{wrong}"
    assert stack.client.list()["items"] == [], "no job may be created from a refused request"


def test_hostile_model_and_alias_names_in_paths_are_refused_with_422(start_stack, tmp_path) -> None:
    stack = start_stack(workers=0)
    http = stack.client._http
    requests = {
        "PUT /v1/models/{name}/aliases/a": lambda v: http.put(
            f"/v1/models/{quote(v['name'], safe='')}/aliases/a", json={"version": 1}
        ),
        "PUT /v1/models/m/aliases/{alias}": lambda v: http.put(
            f"/v1/models/m/aliases/{quote(v['name'], safe='')}", json={"version": 1}
        ),
    }
    wrong = _refusals(stack, requests, tmp_path)
    assert not wrong, f"not refused with 422:\n{wrong}"
