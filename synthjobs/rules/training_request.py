"""A training request (as validated by the API) turned into a training job's params, with the deployment's
limits and the tenant's data sources applied.

Pure: the one thing that needs SQL, finding an uploaded dataset, comes in as `find_upload`. Every refusal is
an `InvalidRequest` whose `loc` names the field; the API answers it with a 422 at that field. Schedules
store the same params (`api/routes/schedules.py`), so a schedule refuses what a submit would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthjobs.errors import DatasetNotFound, InvalidRequest
from synthjobs.rules import model_budget
from synthjobs.rules.data_sources import DataSourceRefused, match_source
from synthjobs.rules.dataset_kinds import KnownShape, get_dataset_kind
from synthjobs.rules.fair_share import DEFAULT_PRIORITY
from synthjobs.settings import Settings


@dataclass(frozen=True)
class Upload:
    """What a training request needs of an uploaded dataset: where it is stored and its image shape."""

    uri: str
    image_shape: dict[str, Any] | None


# Finds a tenant's upload by id; raises DatasetNotFound for an unknown one (or another tenant's).
FindUpload = Callable[[str], Upload]


def train_params(
    request: dict[str, Any], settings: Settings, tenant: str, *, find_upload: FindUpload
) -> dict[str, Any]:
    """A training job's params from its request (`TrainRequest.model_dump()`); InvalidRequest past a limit
    or for data the workers may not read."""
    check_train_limits(request, settings)
    spec, upload = dataset_spec(request["dataset"], settings, tenant, find_upload=find_upload)
    check_model_limits(request["hyperparameters"], submit_image_shape(spec, upload), settings)
    return {
        "model_name": request.get("model_name") or default_model_name(spec),
        "dataset": spec,
        "config": {"seed": request["seed"], **request["hyperparameters"]},
        "max_runtime_seconds": request.get("max_runtime_seconds") or settings.max_runtime_seconds,
        "priority": request.get("priority") or DEFAULT_PRIORITY,
    }


def dataset_spec(
    dataset: str | dict[str, Any], settings: Settings, tenant: str, *, find_upload: FindUpload
) -> tuple[dict[str, Any], Upload | None]:
    """The dataset as a normalised spec (and its upload, if it names one), checked as its kind requires."""
    if isinstance(dataset, str):
        return {"kind": "builtin", "name": dataset}, None
    spec = dict(dataset)
    kind = get_dataset_kind(spec["kind"])
    if kind.download_field and spec.get(kind.download_field) and not settings.allow_dataset_downloads:
        message = "this deployment does not download datasets; put the files under root and omit download"
        raise InvalidRequest(("dataset", kind.download_field), message, "not_allowed")
    if kind.location_field:
        check_data_location(spec[kind.location_field], kind.location_field, settings, tenant)
    upload = None
    if kind.uploaded:
        try:
            upload = find_upload(spec["id"])
        except DatasetNotFound as exc:
            raise InvalidRequest(("dataset", "id"), str(exc), "not_found") from exc
        spec["uri"] = upload.uri
    return spec, upload


def check_data_location(value: str, field: str, settings: Settings, tenant: str) -> None:
    """InvalidRequest on `dataset.<field>` unless `value` is in one of the tenant's data sources (workers
    re-check)."""
    sources = settings.resolved_data_sources(tenant)
    try:
        source, _ = match_source(
            value, sources, settings.resolved_storage_url(), resolve_local=os.path.realpath
        )
    except DataSourceRefused as exc:
        raise InvalidRequest(("dataset", field), str(exc), "not_allowed") from exc
    if source.location.scheme == "s3" and not (
        source.has_credentials or settings.data_sources_instance_credentials
    ):
        message = f"{value}: its data source has no credentials configured on this deployment"
        raise InvalidRequest(("dataset", field), message, "not_allowed")


def default_model_name(spec: dict[str, Any]) -> str:
    """`<dataset>-cvae`, e.g. digits-cvae, mnist-cvae; `<kind>-cvae` (image-folder-cvae) for the others."""
    return f"{get_dataset_kind(spec['kind']).model_stem(spec)}-cvae"


def check_train_limits(request: dict[str, Any], settings: Settings) -> None:
    """InvalidRequest naming the first hyperparameter past this deployment's limit."""
    hp = request["hyperparameters"]
    limits = [
        ("epochs", settings.max_epochs),
        ("batch_size", settings.max_batch_size),
        ("latent_dim", settings.max_latent_dim),
        ("hidden_dim", settings.max_hidden_dim),
    ]
    for name, limit in limits:
        if hp[name] > limit:
            message = f"{name} {hp[name]} is above this deployment's limit of {limit}"
            raise InvalidRequest(("hyperparameters", name), message, "limit")
    runtime, most = request.get("max_runtime_seconds"), settings.max_runtime_seconds
    if runtime is not None and runtime > most:
        message = f"max_runtime_seconds {runtime} is above this deployment's limit of {most}"
        raise InvalidRequest(("max_runtime_seconds",), message, "limit")


def submit_image_shape(spec: dict[str, Any], upload: Upload | None) -> KnownShape:
    """(C, H, W) and class count of the dataset as far as known at submit; None when unknown (a folder).

    An uploaded dataset's classes are unknown until its labels are read, so its figure uses the fewest a
    dataset can have (the worker checks again with the exact one).
    """
    if upload is not None:
        shape = upload.image_shape or {}
        try:
            chw = (int(shape["channels"]), int(shape["height"]), int(shape["width"]))
        except (KeyError, TypeError, ValueError):
            return None
        return chw, model_budget.MIN_CLASSES
    return get_dataset_kind(spec["kind"]).known_shape(spec)


def check_model_limits(hyperparameters: dict[str, Any], known: KnownShape, settings: Settings) -> None:
    """InvalidRequest with the figure and the limit when the model or its activations are past this
    deployment's."""
    if known is None:
        return
    image_shape, num_classes = known
    model_budget.check_model_budget(
        image_shape,
        num_classes,
        hyperparameters,
        max_parameters=settings.max_model_parameters,
        max_activation_bytes=settings.max_activation_bytes,
    )
