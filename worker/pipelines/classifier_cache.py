"""Evaluation classifiers cached in storage, one folder per tenant, reused across jobs and worker restarts.

A training job's evaluation classifier depends only on its `training.classifier_cache.ClassifierKey`
(dataset fingerprint, seed, image shape, recipes, device type), so a second job on the same data and seed
loads the first one's instead of training it again (25-31 s of a 34-42 s 28x28 CPU job). Entries live in the
service's storage, so every worker shares them and they outlive a worker process:

    cache/{tenant}/classifiers/{key digest}.pt

The tenant is a key segment of its own (the job's tenant, from its row, never from the request), so a job
reads only its own tenant's entries, even when two tenants train on identical data. An entry that
is missing, corrupt or for another key is retrained and overwritten; the cache is best effort: a failed
read or write never fails the job, it only costs the training it would have saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from synthjobs.errors import ObjectNotFound, StorageError
from synthjobs.storage.base import Storage
from training.classifier_cache import CacheEntryInvalid, ClassifierKey, decode, encode
from training.data import ImageDataset
from training.evaluate import evaluation_classifier

log = logging.getLogger(__name__)

Event = Callable[[str, str, dict[str, Any]], None]


def entry_key(tenant: str, key: ClassifierKey) -> str:
    """The storage key of `key`'s entry in `tenant`'s cache."""
    return f"cache/{tenant}/classifiers/{key.digest()}.pt"


def classifier_key(data: ImageDataset, fingerprint: str, *, seed: int, device: torch.device) -> ClassifierKey:
    """The key of the evaluation classifier of a job seeded with `seed` on `data` (its `fingerprint`)."""
    c, h, w = (int(v) for v in data.image_shape)
    return ClassifierKey(
        fingerprint=fingerprint,
        seed=int(seed),
        image_shape=(c, h, w),
        num_classes=int(data.num_classes),
        device_type=torch.device(device).type,
    )


def cached_evaluation_classifier(
    storage: Storage,
    tenant: str,
    data: ImageDataset,
    fingerprint: str,
    *,
    seed: int,
    device: torch.device,
    event: Event | None = None,
) -> nn.Module:
    """`training.evaluate.evaluation_classifier(data, seed=seed)`, from `tenant`'s cache when it holds it.

    `event(kind, message, data)` is told whether the entry was reused or trained (kind "classifier").
    """
    key = classifier_key(data, fingerprint, seed=seed, device=device)
    name = entry_key(tenant, key)
    started = time.monotonic()
    reason = _read(storage, name, key, device)
    if isinstance(reason, nn.Module):
        _tell(event, "reused from the cache", name, started, cached=True)
        return reason
    classifier = evaluation_classifier(data, seed=seed, device=device)
    try:
        storage.put_bytes(name, encode(classifier, key))
    except StorageError as exc:
        log.warning("could not store the evaluation classifier in the cache (%s): %s", name, exc)
    _tell(event, f"trained ({reason})", name, started, cached=False)
    return classifier


def _read(storage: Storage, name: str, key: ClassifierKey, device: torch.device) -> nn.Module | str:
    """The cached classifier, or why there is none (the reason goes into the event)."""
    try:
        blob = storage.get_bytes(name)
    except ObjectNotFound:
        return "not in the cache"
    except StorageError as exc:
        log.warning("could not read the classifier cache entry %s: %s", name, exc)
        return "cache unreadable"
    try:
        return decode(blob, key, device)
    except CacheEntryInvalid as exc:
        log.warning("ignoring the classifier cache entry %s: %s", name, exc)
        return f"cache entry ignored: {exc}"


def _tell(event: Event | None, what: str, name: str, started: float, *, cached: bool) -> None:
    seconds = time.monotonic() - started
    if event is not None:
        event(
            "classifier",
            f"evaluation classifier {what} in {seconds:.2f}s",
            {"cached": cached, "entry": name.rsplit("/", 1)[-1], "seconds": round(seconds, 3)},
        )
