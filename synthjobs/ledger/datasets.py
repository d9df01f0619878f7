"""Uploaded datasets: an `.npz` stored under `datasets/{id}/data.npz` and a row describing it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from synthjobs.errors import DatasetNotFound
from synthjobs.ledger.tables import DEFAULT_TENANT, Dataset, new_id
from synthjobs.rules.npzinfo import ArrayInfo


def dataset_key(dataset_id: str) -> str:
    """Where an uploaded dataset's file lives in storage."""
    return f"datasets/{dataset_id}/data.npz"


def new_dataset_id() -> str:
    return new_id()


def add_dataset(
    session: Session,
    *,
    dataset_id: str,
    name: str,
    uri: str,
    size: int,
    sha256: str,
    images: ArrayInfo,
    tenant: str = DEFAULT_TENANT,
) -> Dataset:
    """Record an uploaded dataset whose file is already stored."""
    shape = images.shape
    dataset = Dataset(
        id=dataset_id,
        tenant=tenant,
        name=name,
        uri=uri,
        bytes=size,
        sha256=sha256,
        num_images=shape[0],
        image_shape={"height": shape[1], "width": shape[2], "channels": shape[3] if len(shape) == 4 else 1},
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: str, *, tenant: str | None = None) -> Dataset:
    """The uploaded dataset with that id (of `tenant`, when given)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (tenant is not None and dataset.tenant != tenant):
        raise DatasetNotFound(f"no dataset with id {dataset_id}")
    return dataset


def list_datasets(session: Session, *, tenant: str, limit: int = 100) -> Sequence[Dataset]:
    """A tenant's uploaded datasets, newest first."""
    query = select(Dataset).where(Dataset.tenant == tenant).order_by(Dataset.created_at.desc())
    return session.scalars(query.limit(limit)).all()
