"""The table of dataset kinds: each kind's spec schema, the checks its spec needs at submit, its label.

A training request names its data by a spec with a `kind` (`{"kind": "torchvision", "name": "MNIST",
"root": ...}`). Everything the API needs to accept one — the pydantic schema (the API builds its
discriminated union from this table), which field names a location that must lie inside the tenant's data
sources, whether it may ask for a download, whether it names an upload — and the label recorded with the
model live in one `DatasetKind` here. The worker binds each kind's loader (`worker.pipelines.datasets`),
because loading needs numpy and training/; the API never imports it.

A new dataset kind is one `register_dataset_kind(DatasetKind(...))` (a plugin's `loader` names its worker
function as `module:function`, so the API process imports nothing of the worker).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthjobs.rules import model_budget

# (C, H, W) and the class count of a dataset as far as known at submit (for the model budget), or None.
KnownShape = tuple[tuple[int, int, int], int] | None


class DatasetSpecModel(BaseModel):
    """Base of every dataset spec schema: unknown fields are a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _check_local_path(value: str) -> str:
    if "\x00" in value or not value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must be an absolute path without '..' or NUL bytes")
    return value


class BuiltinDataset(DatasetSpecModel):
    """A dataset bundled with the service."""

    kind: Literal["builtin"] = "builtin"
    name: Literal["digits"] = "digits"


class TorchvisionDataset(DatasetSpecModel):
    """A torchvision dataset read from a local root the workers can see (under a configured data root)."""

    kind: Literal["torchvision"]
    name: Literal["MNIST", "FashionMNIST", "CIFAR10"]
    root: str = Field(max_length=1024)
    download: bool = Field(default=False, description="Download into root if absent (needs network).")

    _root = field_validator("root")(_check_local_path)


class ImageFolderDataset(DatasetSpecModel):
    """Images under `<url>/<class_name>/<image>` (PNG/JPEG); class names sorted into label ids."""

    kind: Literal["image_folder"]
    url: str = Field(
        max_length=2048, pattern=r"^(s3|file)://", description="s3://bucket/prefix or file:///path"
    )

    @field_validator("url")
    @classmethod
    def _safe_url(cls, value: str) -> str:
        decoded = unquote(value)
        if "\x00" in decoded or ".." in decoded.split("/"):
            raise ValueError("must not contain '..' (encoded or not) or NUL bytes")
        return value


class UploadedDataset(DatasetSpecModel):
    """An .npz dataset uploaded with `POST /v1/datasets`."""

    kind: Literal["uploaded"]
    id: str = Field(pattern=r"^[0-9a-f-]{36}$")


def _named(spec: dict[str, Any]) -> str:
    return str(spec["name"])


def _by_kind(spec: dict[str, Any]) -> str:
    return str(spec["kind"]).replace("_", "-")


def _no_shape(spec: dict[str, Any]) -> KnownShape:
    return None


def _known_by_name(spec: dict[str, Any]) -> KnownShape:
    return model_budget.KNOWN_DATASETS.get(spec["name"])


@dataclass(frozen=True)
class DatasetKind:
    """Everything outside the worker that one kind of dataset spec needs."""

    name: str
    schema: type[BaseModel]
    # The label recorded with the model and its checkpoint (`TrainConfig.dataset`).
    describe: Callable[[dict[str, Any]], str]
    # The default registry name is `<stem>-cvae`.
    model_stem: Callable[[dict[str, Any]], str] = _by_kind
    # A field naming data (a path or URL) that must lie in one of the tenant's data sources: checked at
    # submit, and again by the worker before it reads.
    location_field: str | None = None
    # A boolean field asking the worker to download the data: refused unless the deployment allows it.
    download_field: str | None = None
    # The spec names an upload by `id`: the API adds its storage `uri` and reads its image shape.
    uploaded: bool = False
    # Shape and class count known from the spec alone (the model budget is checked at submit).
    known_shape: Callable[[dict[str, Any]], KnownShape] = _no_shape
    # `module:function` the worker calls for a plugin kind: `(spec, settings, storage, tenant) -> dataset`.
    loader: str = ""


_DATASET_KINDS: dict[str, DatasetKind] = {}


def register_dataset_kind(kind: DatasetKind) -> DatasetKind:
    """Add a dataset kind; the same one twice is harmless, a different one under a taken name is refused."""
    existing = _DATASET_KINDS.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"dataset kind {kind.name!r} is already registered differently")
    _DATASET_KINDS[kind.name] = kind
    return kind


def unregister_dataset_kind(name: str) -> None:
    _DATASET_KINDS.pop(name, None)


def get_dataset_kind(name: str) -> DatasetKind:
    """The dataset kind `name`; KeyError if no module registered it in this process."""
    try:
        return _DATASET_KINDS[name]
    except KeyError:
        raise KeyError(f"unknown dataset kind {name!r} (is its plugin in SYNTHJOBS_PLUGINS?)") from None


def dataset_kinds() -> list[DatasetKind]:
    return list(_DATASET_KINDS.values())


def describe(spec: dict[str, Any]) -> str:
    """A short label for the dataset a spec names (recorded with the model)."""
    return get_dataset_kind(str(spec.get("kind"))).describe(spec)


BUILTIN = register_dataset_kind(
    DatasetKind(
        "builtin", BuiltinDataset, describe=_named, model_stem=lambda s: _named(s).lower(),
        known_shape=_known_by_name,
    )
)  # fmt: skip
TORCHVISION = register_dataset_kind(
    DatasetKind(
        "torchvision",
        TorchvisionDataset,
        describe=_named,
        model_stem=lambda s: _named(s).lower(),
        location_field="root",
        download_field="download",
        known_shape=_known_by_name,
    )
)
IMAGE_FOLDER = register_dataset_kind(
    DatasetKind(
        "image_folder",
        ImageFolderDataset,
        describe=lambda s: f"image_folder:{s['url']}",
        location_field="url",
    )
)
UPLOADED = register_dataset_kind(
    DatasetKind("uploaded", UploadedDataset, describe=lambda s: f"uploaded:{s.get('id')}", uploaded=True)
)
