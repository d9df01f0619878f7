"""Per-request dependencies: settings, a database session, the task sender, storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from synthjobs.db import get_engine
from synthjobs.settings import Settings
from synthjobs.storage import Storage


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request; routes commit explicitly before they enqueue."""
    settings: Settings = request.app.state.settings
    factory = sessionmaker(get_engine(settings.resolved_database_url()), expire_on_commit=False)
    with factory() as session:
        yield session


def get_sender(request: Request) -> Celery:
    return request.app.state.sender  # type: ignore[no-any-return]


def get_storage(request: Request) -> Storage:
    return request.app.state.storage  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SenderDep = Annotated[Celery, Depends(get_sender)]
StorageDep = Annotated[Storage, Depends(get_storage)]
