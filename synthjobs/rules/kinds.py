"""The registry of job kinds: one `KindSpec` per kind, read by everything that must treat kinds alike.

Publishing (`broker.queue.enqueue_job`), the reconciler, a worker's hand-back, artifact listing, deletion
and the API's submit path all ask this table instead of testing for `train` or `sample`. A kind is either
*job-level* (one task runs the whole job, e.g. training) or *sharded* (the job is split into shard tasks
and finalized once they are done, e.g. sampling); the two have different machinery (`ledger.shards`), so a
caller asks `is_sharded(kind)` rather than naming a kind.

A new kind is one `register_kind(KindSpec(...))` call. The built-in kinds are registered below; others come
from plugin modules named by `SYNTHJOBS_PLUGINS` (`synthjobs.plugins`), imported by the API and the worker
alike. The spec names its worker code by a `module:function` string, so registering a kind imports nothing
of the worker: the API process never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from synthjobs.settings import Settings

# What a generic kind's submit route turns its validated request into: the job's params (InvalidRequest
# for a request this deployment refuses; the API answers 422 at its `loc`).
BuildParams = Callable[[dict[str, Any], Settings], dict[str, Any]]


@dataclass(frozen=True)
class KindSpec:
    """Everything the service needs to know about one kind of job."""

    name: str
    # The Celery task that runs a job-level job, or one shard of a sharded job (the name both sides use).
    task: str
    sharded: bool = False
    # The job's params carry `planned_bytes`, its whole output, reserved against the tenant's storage quota
    # while it runs and checked once planned; other kinds store an amount unknown at submit (checked first,
    # as at least one byte).
    plans_output: bool = False
    # Keys of a succeeded job's `result` whose values are the URIs of its downloadable outputs.
    artifacts: tuple[str, ...] = ()
    # The job registers a model version: it also owns `models/{model_id}/`, and a registered version makes
    # the job undeletable.
    trains_model: bool = False
    # `module:function` the worker runs for a job-level job: `(JobContext) -> result dict`. Only the worker
    # resolves it; for the built-in kinds the worker binds its own functions and this stays empty.
    pipeline: str = ""
    # For kinds submitted through the generic route `POST /v1/jobs/{name}`: its request body and the
    # function that turns it into params. The built-in kinds have their own routes and leave these None.
    request: type[BaseModel] | None = None
    build: BuildParams | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class UnknownKind(KeyError):
    """A job row or a request names a kind no module registered (a plugin missing from this process)."""


_KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add `spec` to the registry; registering the same spec twice is harmless, a different one is refused."""
    existing = _KINDS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"job kind {spec.name!r} is already registered differently")
    if spec.sharded and spec.pipeline:
        raise ValueError(f"job kind {spec.name!r}: a sharded kind runs shard tasks, not a job pipeline")
    if (spec.request is None) != (spec.build is None):
        raise ValueError(f"job kind {spec.name!r}: a generic kind needs both `request` and `build`")
    _KINDS[spec.name] = spec
    return spec


def unregister_kind(name: str) -> None:
    """Remove a kind (tests that register a throw-away kind clean up with this)."""
    _KINDS.pop(name, None)


def get_kind(name: str) -> KindSpec:
    """The spec of `name`; UnknownKind if no module registered it in this process."""
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown job kind {name!r} (is its plugin in SYNTHJOBS_PLUGINS?)") from None


def kinds() -> list[KindSpec]:
    """Every registered kind, built-in ones first."""
    return list(_KINDS.values())


def kind_names() -> list[str]:
    return list(_KINDS)


def is_sharded(kind: str) -> bool:
    """Whether jobs of `kind` run as shards (published per shard, finalized once), not as one task.

    False for a kind this process does not know: whatever it is, it has no shard rows to look at.
    """
    spec = _KINDS.get(kind)
    return spec is not None and spec.sharded


def job_level_kinds() -> list[str]:
    """Kinds whose job is one task: the ones a lost worker or a lost message is repaired for per job."""
    return [spec.name for spec in _KINDS.values() if not spec.sharded]


def sharded_kinds() -> list[str]:
    """Kinds whose job is a set of shards finalized once they are done."""
    return [spec.name for spec in _KINDS.values() if spec.sharded]


def job_task(kind: str) -> str:
    """The task that runs a job of `kind`; ValueError for a sharded kind (publish its shards instead)."""
    spec = get_kind(kind)
    if spec.sharded:
        raise ValueError(f"{kind} jobs have no job-level task; publish their shards")
    return spec.task


def artifact_keys() -> tuple[str, ...]:
    """The `result` keys that name output objects, over every registered kind (each once, in order).

    A job's result holds only the keys its own pipeline wrote, so listing by the union finds exactly its
    artifacts, and a job whose kind's plugin this process lacks still lists those the others share.
    """
    return tuple(dict.fromkeys(key for spec in _KINDS.values() for key in spec.artifacts))


def trains_model(kind: str) -> bool:
    """Whether a job of `kind` registers a model version (and owns its `models/` folder)."""
    spec = _KINDS.get(kind)
    return spec is not None and spec.trains_model


def generic_kinds() -> list[KindSpec]:
    """Kinds submitted through the generic route (a request schema and a params builder of their own)."""
    return [spec for spec in _KINDS.values() if spec.request is not None]


# The built-in kinds. Task names are the ones `synthjobs.broker.queue` publishes (spelled here, not
# imported, because rules sit below the broker; `tests/synthjobs/test_sj_kinds.py` checks they agree).
TRAIN = register_kind(
    KindSpec(
        name="train",
        task="synthjobs.train",
        artifacts=("checkpoint_uri", "model_card_uri", "metrics_uri", "loss_curve_uri", "grid_uri"),
        trains_model=True,
        description="Train a CVAE on a dataset and register the model version.",
    )
)
SAMPLE = register_kind(
    KindSpec(
        name="sample",
        task="synthjobs.sample_shard",
        sharded=True,
        plans_output=True,
        artifacts=("manifest_uri", "grid_uri"),
        description="Bulk-generate labelled samples from a trained model, one task per shard.",
    )
)
