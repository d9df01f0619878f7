"""The model registry: trained models as numbered versions under a name.

A model's id is derived from the id of the job that trained it, so a training task that is retried after
writing its checkpoint registers (and uploads to) the same model instead of a second one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthjobs.errors import ModelNotFound
from synthjobs.models import AliasEvent, Model, ModelAlias, utcnow

_MODEL_NAMESPACE = uuid.UUID("5b1f0f9e-8d57-4f0c-9d2a-2f8f4e1f6a11")
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def model_id_for_job(job_id: str) -> str:
    """The id of the model a training job produces: the same on every attempt of that job."""
    return str(uuid.uuid5(_MODEL_NAMESPACE, job_id))


def register_model(
    session: Session,
    *,
    model_id: str,
    name: str,
    training_job_id: str | None,
    checkpoint_uri: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    dataset: dict[str, Any],
) -> Model:
    """Add the next version of `name`, or return the model already registered under `model_id`."""
    existing = session.get(Model, model_id)
    if existing is not None:
        return existing
    for _ in range(5):
        version = (session.scalar(select(func.max(Model.version)).where(Model.name == name)) or 0) + 1
        model = Model(
            id=model_id,
            name=name,
            version=version,
            training_job_id=training_job_id,
            checkpoint_uri=checkpoint_uri,
            hyperparameters=hyperparameters,
            metrics=metrics,
            dataset=dataset,
        )
        try:
            with session.begin_nested():
                session.add(model)
            return model
        except IntegrityError:
            # Another registration took that version number (or this id) first: look again.
            existing = session.get(Model, model_id)
            if existing is not None:
                return existing
    raise RuntimeError(f"could not allocate a version of model {name!r}")


def get_model(session: Session, model_id: str) -> Model:
    """The model with that id."""
    model = session.get(Model, model_id) if _UUID.match(model_id) else None
    if model is None:
        raise ModelNotFound(f"no model with id {model_id}")
    return model


def resolve_model(session: Session, ref: str) -> Model:
    """A model named by id, `name:version` or `name@alias`, pinned to a concrete model at submit time."""
    if _UUID.match(ref):
        return get_model(session, ref)
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        row = session.get(ModelAlias, (name, alias))
        if row is None:
            raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
        return get_model(session, row.model_id)
    name, sep, version = ref.rpartition(":")
    if sep and version.isascii() and version.isdigit():
        model = session.scalar(select(Model).where(Model.name == name, Model.version == int(version)))
        if model is not None:
            return model
    raise ModelNotFound(f"no model matches {ref!r} (use a model id, name:version or name@alias)")


def set_alias(
    session: Session, name: str, alias: str, model: Model, *, actor: str = "api", reason: str = ""
) -> ModelAlias:
    """Point `name@alias` at `model` (a version of `name`), recording the move in the alias history."""
    if model.name != name:
        raise ModelNotFound(f"model {model.id} is a version of {model.name!r}, not of {name!r}")
    row = session.get(ModelAlias, (name, alias), with_for_update=True)
    previous = row.model_id if row is not None else None
    if row is None:
        row = ModelAlias(name=name, alias=alias, model_id=model.id)
        session.add(row)
    else:
        row.model_id = model.id
        row.updated_at = utcnow()
    session.add(
        AliasEvent(
            name=name, alias=alias, from_model_id=previous, to_model_id=model.id, actor=actor, reason=reason
        )
    )
    session.flush()
    return row


def delete_alias(session: Session, name: str, alias: str, *, actor: str = "api", reason: str = "") -> None:
    """Remove `name@alias`; ModelNotFound when it is not set."""
    row = session.get(ModelAlias, (name, alias), with_for_update=True)
    if row is None:
        raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
    session.add(
        AliasEvent(
            name=name, alias=alias, from_model_id=row.model_id, to_model_id=None, actor=actor, reason=reason
        )
    )
    session.delete(row)
    session.flush()


def list_aliases(session: Session, name: str) -> Sequence[ModelAlias]:
    """The aliases of one model name."""
    return session.scalars(select(ModelAlias).where(ModelAlias.name == name).order_by(ModelAlias.alias)).all()


def alias_history(session: Session, name: str, alias: str) -> Sequence[AliasEvent]:
    """Every move of `name@alias`, newest first."""
    query = select(AliasEvent).where(AliasEvent.name == name, AliasEvent.alias == alias)
    return session.scalars(query.order_by(AliasEvent.id.desc())).all()


def aliases_of(session: Session, model_id: str) -> list[str]:
    """The alias names pointing at one model."""
    return list(session.scalars(select(ModelAlias.alias).where(ModelAlias.model_id == model_id)).all())


def previous_target(session: Session, name: str, alias: str) -> Model | None:
    """The model `name@alias` pointed at before its last move (None if it never pointed elsewhere)."""
    last = session.scalars(
        select(AliasEvent)
        .where(AliasEvent.name == name, AliasEvent.alias == alias)
        .order_by(AliasEvent.id.desc())
    ).first()
    if last is None or last.from_model_id is None:
        return None
    return session.get(Model, last.from_model_id)


def find_version(session: Session, name: str, version: int) -> Model:
    """Version `version` of `name`."""
    model = session.scalar(select(Model).where(Model.name == name, Model.version == version))
    if model is None:
        raise ModelNotFound(f"model {name!r} has no version {version}")
    return model


def list_models(session: Session, *, name: str | None = None, limit: int = 100) -> Sequence[Model]:
    """Models, newest first, optionally of one name."""
    query = select(Model).order_by(Model.created_at.desc(), Model.version.desc()).limit(limit)
    if name is not None:
        query = query.where(Model.name == name)
    return session.scalars(query).all()
