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
from synthjobs.ledger import webhooks
from synthjobs.ledger.tables import DEFAULT_TENANT, AliasEvent, Model, ModelAlias, utcnow

_MODEL_NAMESPACE = uuid.UUID("5b1f0f9e-8d57-4f0c-9d2a-2f8f4e1f6a11")
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_VERSION = 2**31 - 1  # versions are an INTEGER column: a larger one names no model (and would overflow)


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
    tenant: str = DEFAULT_TENANT,
) -> Model:
    """Add the next version of the tenant's `name`, or return the model already registered as `model_id`."""
    existing = session.get(Model, model_id)
    if existing is not None:
        return existing
    for _ in range(5):
        latest = select(func.max(Model.version)).where(Model.tenant == tenant, Model.name == name)
        version = (session.scalar(latest) or 0) + 1
        model = Model(
            id=model_id,
            tenant=tenant,
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


def get_model(session: Session, model_id: str, *, tenant: str | None = None) -> Model:
    """The model with that id (of `tenant`, when given)."""
    model = session.get(Model, model_id) if _UUID.match(model_id) else None
    if model is None or (tenant is not None and model.tenant != tenant):
        raise ModelNotFound(f"no model with id {model_id}")
    return model


def _is_version(text: str) -> bool:
    """Whether `text` is a version number a model can have (ASCII digits, at most MAX_VERSION)."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_VERSION


def resolve_model(session: Session, ref: str, *, tenant: str = DEFAULT_TENANT) -> Model:
    """The tenant's model named by id, `name:version` or `name@alias`, pinned to a concrete model."""
    if _UUID.match(ref):
        return get_model(session, ref, tenant=tenant)
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        row = session.get(ModelAlias, (tenant, name, alias))
        if row is None:
            raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
        return get_model(session, row.model_id)
    name, sep, version = ref.rpartition(":")
    if sep and _is_version(version):
        query = select(Model).where(Model.tenant == tenant, Model.name == name, Model.version == int(version))
        if (model := session.scalar(query)) is not None:
            return model
    raise ModelNotFound(f"no model matches {ref!r} (use a model id, name:version or name@alias)")


def set_alias(
    session: Session, name: str, alias: str, model: Model, *, actor: str = "api", reason: str = ""
) -> ModelAlias:
    """Point `name@alias` at `model` (a version of `name`), recording the move in the alias history.

    The alias and its history event belong to the model's tenant: an alias only ever names a model of its
    own tenant, so a move is never visible to (or undone by) another tenant.
    """
    if model.name != name:
        raise ModelNotFound(f"model {model.id} is a version of {model.name!r}, not of {name!r}")
    tenant = model.tenant
    row = session.get(ModelAlias, (tenant, name, alias), with_for_update=True)
    previous = row.model_id if row is not None else None
    if row is None:
        row = ModelAlias(tenant=tenant, name=name, alias=alias, model_id=model.id)
        session.add(row)
    else:
        row.model_id = model.id
        row.updated_at = utcnow()
    event = AliasEvent(
        tenant=tenant,
        name=name,
        alias=alias,
        from_model_id=previous,
        to_model_id=model.id,
        actor=actor,
        reason=reason,
    )
    session.add(event)
    session.flush()
    data = {"name": name, "alias": alias, "model_id": model.id, "version": model.version}
    webhooks.emit(
        session,
        tenant,
        "model.promoted",
        {**data, "from_model_id": previous, "actor": actor, "reason": reason},
    )
    return row


def delete_alias(
    session: Session,
    name: str,
    alias: str,
    *,
    tenant: str = DEFAULT_TENANT,
    actor: str = "api",
    reason: str = "",
) -> None:
    """Remove the tenant's `name@alias`; ModelNotFound when it is not set."""
    row = session.get(ModelAlias, (tenant, name, alias), with_for_update=True)
    if row is None:
        raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
    event = AliasEvent(
        tenant=tenant,
        name=name,
        alias=alias,
        from_model_id=row.model_id,
        to_model_id=None,
        actor=actor,
        reason=reason,
    )
    session.add(event)
    session.delete(row)
    session.flush()


def alias_history(
    session: Session, name: str, alias: str, *, tenant: str = DEFAULT_TENANT
) -> Sequence[AliasEvent]:
    """Every move of the tenant's `name@alias`, newest first."""
    query = select(AliasEvent).where(
        AliasEvent.tenant == tenant, AliasEvent.name == name, AliasEvent.alias == alias
    )
    return session.scalars(query.order_by(AliasEvent.id.desc())).all()


def aliases_of(session: Session, model_id: str) -> list[str]:
    """The alias names pointing at one model."""
    return list(session.scalars(select(ModelAlias.alias).where(ModelAlias.model_id == model_id)).all())


def previous_target(session: Session, name: str, alias: str, *, tenant: str = DEFAULT_TENANT) -> Model | None:
    """The model the tenant's `name@alias` pointed at before its last move (None if nothing earlier).

    Only the tenant's own history and models count: a rollback can never pick (and then move) a model
    of another tenant, even from a history row written before alias events carried their tenant.
    """
    query = select(AliasEvent.from_model_id).where(
        AliasEvent.tenant == tenant, AliasEvent.name == name, AliasEvent.alias == alias
    )
    previous = session.scalar(query.order_by(AliasEvent.id.desc()).limit(1))
    if previous is None:
        return None
    model = session.get(Model, previous)
    if model is None or model.tenant != tenant or model.name != name:
        return None
    return model


def find_version(session: Session, name: str, version: int, *, tenant: str = DEFAULT_TENANT) -> Model:
    """Version `version` of the tenant's `name`."""
    query = select(Model).where(Model.tenant == tenant, Model.name == name, Model.version == version)
    model = session.scalar(query)
    if model is None:
        raise ModelNotFound(f"model {name!r} has no version {version}")
    return model


def list_models(
    session: Session, *, name: str | None = None, limit: int = 100, tenant: str = DEFAULT_TENANT
) -> Sequence[Model]:
    """The tenant's models, newest first, optionally of one name."""
    query = select(Model).where(Model.tenant == tenant)
    query = query.order_by(Model.created_at.desc(), Model.version.desc()).limit(limit)
    if name is not None:
        query = query.where(Model.name == name)
    return session.scalars(query).all()
