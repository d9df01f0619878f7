"""Read the model registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep
from api.schemas import ModelList, ModelOut
from synthjobs import registry
from synthjobs.models import Model
from synthjobs.registry import MODEL_NAME_PATTERN

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep,
    name: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ModelList:
    """List trained models, newest first, optionally of one name."""
    models = registry.list_models(session, name=name, limit=limit)
    return ModelList(items=[ModelOut.model_validate(m) for m in models])


@router.get("/{model_id}", response_model=ModelOut, responses={404: {"description": "No such model."}})
def get_model(model_id: str, session: SessionDep) -> Model:
    """Read one model: hyperparameters, metrics and checkpoint URI."""
    return registry.get_model(session, model_id)
