"""The model registry: versions under a name, and aliases (`digits-cvae@champion`) that point at one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from api.deps import SessionDep, TenantDep
from api.errors import field_error
from api.schemas import AliasEventOut, AliasOut, AliasRequest, ModelList, ModelOut
from synthjobs.ledger import registry
from synthjobs.ledger.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN
from synthjobs.ledger.tables import Model, ModelAlias

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
AliasName = Annotated[str, Path(pattern=ALIAS_PATTERN)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such model or alias."}}


def model_out(session: SessionDep, model: Model) -> ModelOut:
    out = ModelOut.model_validate(model)
    out.aliases = registry.aliases_of(session, model.id)
    return out


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    name: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ModelList:
    """List trained models, newest first, optionally of one name."""
    models = registry.list_models(session, name=name, limit=limit, tenant=tenant)
    return ModelList(items=[model_out(session, m) for m in models])


@router.get("/{model_id}", response_model=ModelOut, responses=NOT_FOUND)
def get_model(model_id: str, session: SessionDep, tenant: TenantDep) -> ModelOut:
    """Read one model by id, `name:version` or `name@alias`: hyperparameters, metrics, checkpoint URI."""
    return model_out(session, registry.resolve_model(session, model_id, tenant=tenant))


@router.put("/{name:path}/aliases/{alias:path}", response_model=AliasOut, responses=NOT_FOUND)
def set_alias(
    name: ModelName, alias: AliasName, body: AliasRequest, session: SessionDep, tenant: TenantDep
) -> AliasOut:
    """Point an alias of a model name (e.g. `champion`) at one of its versions."""
    if (body.version is None) == (body.model_id is None):
        raise HTTPException(422, field_error(("version",), "give exactly one of version or model_id"))
    if body.version is not None:
        model = registry.find_version(session, name, body.version, tenant=tenant)
    else:
        model = registry.get_model(session, str(body.model_id), tenant=tenant)
    row = registry.set_alias(session, name, alias, model, actor="api", reason=body.reason)
    session.commit()
    return alias_out(row, model)


@router.delete(
    "/{name:path}/aliases/{alias:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
def delete_alias(name: ModelName, alias: AliasName, session: SessionDep, tenant: TenantDep) -> Response:
    """Remove an alias; sampling jobs already submitted keep the model they were pinned to."""
    registry.delete_alias(session, name, alias, tenant=tenant, actor="api")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name:path}/aliases/{alias}/rollback",
    response_model=AliasOut,
    responses={**NOT_FOUND, 409: {"description": "The alias has no earlier version to go back to."}},
)
def roll_back_alias(name: ModelName, alias: AliasName, session: SessionDep, tenant: TenantDep) -> AliasOut:
    """Point an alias back at the version it pointed at before its last move."""
    registry.resolve_model(session, f"{name}@{alias}", tenant=tenant)  # 404 unless the alias is set
    model = registry.previous_target(session, name, alias, tenant=tenant)
    if model is None:
        raise HTTPException(409, f"{name}@{alias} has no earlier version to roll back to")
    row = registry.set_alias(session, name, alias, model, actor="api", reason="rollback")
    session.commit()
    return alias_out(row, model)


@router.get("/{name:path}/aliases/{alias}/history", response_model=list[AliasEventOut], responses=NOT_FOUND)
def list_alias_history(
    name: ModelName, alias: AliasName, session: SessionDep, tenant: TenantDep
) -> list[AliasEventOut]:
    """Every move of an alias, newest first: from which model to which, by whom, why."""
    events = registry.alias_history(session, name, alias, tenant=tenant)
    if not events:  # 404 for an alias this tenant never had, like every other lookup
        registry.resolve_model(session, f"{name}@{alias}", tenant=tenant)
    return [AliasEventOut.model_validate(e) for e in events]


def alias_out(row: ModelAlias, model: Model) -> AliasOut:
    return AliasOut(
        name=row.name, alias=row.alias, model_id=model.id, version=model.version, updated_at=row.updated_at
    )
