"""Turning a sampling request into job params and shards: shared by the API and by schedules' follow-ups.

Errors are InvalidRequest naming the field, which the API answers as a 422.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from synthjobs.errors import InvalidRequest
from synthjobs.rules.fair_share import DEFAULT_PRIORITY
from synthjobs.rules.formats import DEFAULT_FORMAT, get_format
from synthjobs.rules.model_budget import human_bytes
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from synthjobs.ledger.tables import Model
from synthjobs.rules.sharding import shard_count, split_total

DISTRIBUTION_TOLERANCE = 1e-9  # how far from 1 a distribution's proportions may sum (float rounding)


def sample_params(request: dict[str, Any], model: Model, settings: Settings) -> dict[str, Any]:
    """The params of a sampling job for a validated request body and the model it was resolved to."""
    class_names = list(model.dataset.get("class_names", []))
    counts = requested_counts(request, class_names)
    per_sample = sample_bytes(model.dataset.get("image_shape"), request.get("format", DEFAULT_FORMAT))
    shard_size = request.get("shard_size") or default_shard_size(per_sample, settings)
    check_sample_limits(sum(counts), shard_size, settings)
    quality = request.get("quality", "basic")
    if quality == "tstr" and not model.dataset.get("spec"):
        message = (
            f"model {model.name}:{model.version} records no dataset it was trained on, so TSTR has no real "
            "held-out data to test on; use quality 'basic'"
        )
        raise InvalidRequest(("quality",), message)
    privacy = {k: v for k, v in (request.get("privacy") or {}).items() if v is not None}
    if privacy and not model.dataset.get("spec"):
        message = (
            f"model {model.name}:{model.version} records no dataset it was trained on, so a privacy report "
            "has no real training and held-out data to compare with"
        )
        raise InvalidRequest(("privacy",), message)
    check_output_bytes(request, sum(counts), shard_size, per_sample, settings)
    return {
        "model_id": model.id,
        "model": f"{model.name}:{model.version}",
        "counts": counts,
        "seed": request.get("seed", 0),
        "temperature": request.get("temperature", 1.0),
        "shard_size": shard_size,
        "format": request.get("format", DEFAULT_FORMAT),
        "quality": quality,
        "quality_samples": request.get("quality_samples", 2000),
        "privacy": privacy,
        "shuffle": bool(request.get("shuffle", True)),
        "priority": request.get("priority") or DEFAULT_PRIORITY,
        "planned_bytes": planned_bytes(
            sum(counts), model.dataset.get("image_shape") or [], request.get("format", DEFAULT_FORMAT)
        ),
    }


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
    if abs(math.fsum(weights) - 1.0) > DISTRIBUTION_TOLERANCE:
        # A partial map is not renormalised: {"0": 0.5} must not silently mean 100 % class 0.
        message = (
            f"proportions sum to {math.fsum(weights):.12g}, not 1; classes left out get no samples, "
            "so give every class you want with proportions that add up to 1"
        )
        raise InvalidRequest(("distribution",), message)
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


# A shard file's fixed cost besides its samples: zip or tar headers, .npy headers, the tar's end blocks.
SHARD_OVERHEAD_BYTES = 16 << 10


def sample_bytes(image_shape: Any, fmt: str) -> int | None:
    """Bytes one generated sample takes in a shard file of `fmt`, at most (`rules.formats`); None if the
    shape is unknown."""
    try:
        c, h, w = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        return None
    return get_format(fmt).sample_bytes(c, h, w)


def default_shard_size(per_sample: int | None, settings: Settings) -> int:
    """The deployment's default shard size, lowered so a shard of the model's samples fits max_shard_bytes."""
    if per_sample is None:
        return settings.default_shard_size
    fits = (settings.max_shard_bytes - SHARD_OVERHEAD_BYTES) // per_sample
    return max(1, min(settings.default_shard_size, settings.max_shard_size, fits))


def check_output_bytes(
    request: dict[str, Any], total: int, shard_size: int, per_sample: int | None, settings: Settings
) -> None:
    """422 when one shard or the whole job's output is larger, in bytes, than this deployment allows."""
    if per_sample is None:  # a model registered without its image shape: only the counts are checked
        return
    fmt = request.get("format", DEFAULT_FORMAT)
    shard = min(shard_size, total) * per_sample + SHARD_OVERHEAD_BYTES
    if shard > settings.max_shard_bytes:
        fits = max(0, (settings.max_shard_bytes - SHARD_OVERHEAD_BYTES) // per_sample)
        message = (
            f"shard_size {shard_size} makes shards of about {human_bytes(shard)} ({per_sample} bytes a "
            f"sample as {fmt}); this deployment's limit is {human_bytes(settings.max_shard_bytes)} per "
            f"shard, {fits} samples of this model"
        )
        raise InvalidRequest(("shard_size",), message, "limit")
    output = total * per_sample + shard_count(total, shard_size) * SHARD_OVERHEAD_BYTES
    if output > settings.max_job_output_bytes:
        fits = settings.max_job_output_bytes // (per_sample + SHARD_OVERHEAD_BYTES // shard_size + 1)
        field = "total" if request.get("total") is not None else "per_class"
        message = (
            f"{total} samples make about {human_bytes(output)} of output ({per_sample} bytes a sample as "
            f"{fmt}); this deployment's limit is {human_bytes(settings.max_job_output_bytes)} per job, "
            f"about {fits} samples of this model"
        )
        raise InvalidRequest((field,), message, "limit")


def planned_bytes(total: int, image_shape: list[int], fmt: str) -> int:
    """What the storage quota reserves for `total` samples of `image_shape` (C, H, W) in `fmt`.

    The same per-sample bound as the byte limits (`sample_bytes`), so a job admitted by the quota does not
    overrun it; a model registered without its image shape reserves only its labels.
    """
    return total * (sample_bytes(image_shape, fmt) or 8)
