"""Turning a sampling request into job params and shards: shared by the API and by schedules' follow-ups.

Errors are InvalidRequest naming the field, which the API answers as a 422.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from synthjobs import jobs, shards
from synthjobs.errors import InvalidRequest
from synthjobs.models import Job, JobKind, Model
from synthjobs.settings import Settings
from synthjobs.sharding import plan_shards, shard_count, split_total


def sample_params(request: dict[str, Any], model: Model, settings: Settings) -> dict[str, Any]:
    """The params of a sampling job for a validated request body and the model it was resolved to."""
    class_names = list(model.dataset.get("class_names", []))
    counts = requested_counts(request, class_names)
    shard_size = request.get("shard_size") or settings.default_shard_size
    check_sample_limits(sum(counts), shard_size, settings)
    return {
        "model_id": model.id,
        "model": f"{model.name}:{model.version}",
        "counts": counts,
        "seed": request.get("seed", 0),
        "temperature": request.get("temperature", 1.0),
        "shard_size": shard_size,
        "format": request.get("format", "npz"),
        "quality": request.get("quality", "basic"),
        "quality_samples": request.get("quality_samples", 2000),
        "planned_bytes": planned_bytes(
            sum(counts), model.dataset.get("image_shape") or [], request.get("format", "npz")
        ),
    }


def create_sampling_job(session: Session, params: dict[str, Any], *, tenant: str) -> tuple[Job, int]:
    """Add a QUEUED sampling job and its PENDING shards; the caller commits, then publishes the shards."""
    job = jobs.create_job(session, JobKind.SAMPLE, params, tenant=tenant)
    jobs.set_reserved_bytes(job, int(params.get("planned_bytes") or 0))
    plan = plan_shards(params["counts"], params["shard_size"])
    shards.create_shards(session, job.id, plan)
    return job, len(plan)


def requested_counts(request: dict[str, Any], class_names: list[str]) -> list[int]:
    """Per-class counts in label order; InvalidRequest unless exactly one of per_class and total is given."""
    per_class, total = request.get("per_class"), request.get("total")
    if (per_class is None) == (total is None):
        raise InvalidRequest(("per_class",), "give exactly one of per_class and total")
    if per_class is not None:
        return resolve_counts(per_class, class_names)
    proportions = request.get("distribution", "uniform")
    if proportions == "uniform":
        return split_total(int(str(total)), [1.0] * len(class_names))
    weights = [0.0] * len(class_names)
    for index, weight in _by_class(proportions, class_names, "distribution").items():
        if not math.isfinite(weight) or weight < 0:
            message = "proportion must be a finite number, not negative"
            raise InvalidRequest(("distribution", class_names[index]), message)
        weights[index] = weight
    if sum(weights) <= 0:
        raise InvalidRequest(("distribution",), "proportions must not all be zero")
    return split_total(int(str(total)), weights)


def resolve_counts(per_class: int | dict[str, int], class_names: list[str]) -> list[int]:
    """Per-class counts in label order from a number for all or a map of class name (or id) to count."""
    if isinstance(per_class, int):
        if per_class < 1:
            raise InvalidRequest(("per_class",), "must be at least 1")
        return [per_class] * len(class_names)
    counts = [0] * len(class_names)
    for index, count in _by_class(per_class, class_names, "per_class").items():
        if count < 0:
            raise InvalidRequest(("per_class", str(index)), "count must not be negative")
        counts[index] = count
    if sum(counts) == 0:
        raise InvalidRequest(("per_class",), "asks for no samples at all")
    return counts


def _by_class(mapping: dict[str, Any], class_names: list[str], field: str) -> dict[int, Any]:
    """A map keyed by class name or id, re-keyed by label index; 422 for an unknown or repeated class."""
    by_index: dict[int, Any] = {}
    for key, value in mapping.items():
        index = _class_index(key, class_names, field)
        if index in by_index:
            raise InvalidRequest((field, key), f"names class {class_names[index]!r} twice")
        by_index[index] = value
    return by_index


def _class_index(key: str, class_names: list[str], field: str) -> int:
    if key in class_names:
        return class_names.index(key)
    if key.isascii() and key.isdigit() and int(key) < len(class_names):
        return int(key)
    known = ", ".join(class_names)
    raise InvalidRequest((field, key), f"unknown class {key!r}; the model has {known}")


def check_sample_limits(total: int, shard_size: int, settings: Settings) -> None:
    """422 naming the limit a sampling request exceeds."""
    shards_needed = shard_count(total, shard_size)
    if shards_needed > settings.max_shards:
        message = f"{shards_needed} shards is above this deployment's limit of {settings.max_shards}"
        raise InvalidRequest(("shard_size",), message, "limit")
    if total > settings.max_samples_per_job:
        message = (
            f"{total} samples is above this deployment's limit of {settings.max_samples_per_job} per job"
        )
        raise InvalidRequest(("per_class",), message, "limit")
    if shard_size > settings.max_shard_size:
        message = f"shard_size {shard_size} is above this deployment's limit of {settings.max_shard_size}"
        raise InvalidRequest(("shard_size",), message, "limit")


def planned_bytes(total: int, image_shape: list[int], fmt: str) -> int:
    """About how many bytes `total` samples of `image_shape` (C, H, W) take in `fmt`: what the quota reserves.

    npz stores each image as C×H×W uint8 plus an int64 label (zip and .npy headers are a few hundred bytes
    a shard); a webdataset tar holds two 512-byte member headers, the PNG (at most the raw pixels plus
    ~100 bytes of PNG framing, padded to 512) and the label (padded to 512). Deliberately not below the
    real size, so a job admitted by the quota does not overrun it.
    """
    pixels = math.prod(int(d) for d in image_shape) if image_shape else 0
    if fmt == "webdataset":
        per_sample = 3 * 512 + 512 * math.ceil((pixels + 100) / 512)
    else:
        per_sample = pixels + 8
    return total * per_sample
