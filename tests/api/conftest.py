"""The API in-process on the embedded default: SQLite ledger, kombu's SQLAlchemy broker on SQLite, a folder.

Nothing is mocked: a POST writes the job row and really publishes its message to the broker file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from synthjobs.ledger.db import dispose_engines, session_scope
from synthjobs.ledger.migrate import upgrade_database
from synthjobs.ledger.registry import register_model
from synthjobs.settings import Settings, get_settings

ApiFactory = Callable[..., TestClient]
DIGITS = {"class_names": [str(i) for i in range(10)], "image_shape": [1, 8, 8]}


@pytest.fixture(autouse=True)
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every `SYNTHJOBS_<field>` variable of the caller's shell, so a test sees only its own."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SYNTHJOBS_{name.upper()}", raising=False)
    get_settings.cache_clear()


ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[ApiFactory]:
    """Build a migrated app for Settings(home=<fresh folder>, **overrides) and a TestClient on it."""
    made: list[TestClient] = []

    def make(*, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        settings = Settings(home=tmp_path / f"home{len(made)}", **overrides)
        settings.ensure_home()
        upgrade_database(settings.resolved_database_url())
        client = TestClient(
            create_app(settings),
            raise_server_exceptions=raise_server_exceptions,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
        client.app.state.sender.close()  # type: ignore[attr-defined]
    dispose_engines()


@pytest.fixture
def api(make_api: ApiFactory) -> TestClient:
    """The API with default settings."""
    return make_api()


@pytest.fixture
def ledger_url() -> Callable[[TestClient], str]:
    """The database URL behind a client's app, to look at or seed its ledger directly."""

    def url(client: TestClient) -> str:
        return client.app.state.settings.resolved_database_url()  # type: ignore[attr-defined,no-any-return]

    return url


@pytest.fixture
def add_model(ledger_url: Callable[[TestClient], str]) -> Callable[..., str]:
    """Register a model straight into an app's ledger (no training); returns its id."""

    def add(client: TestClient, name: str = "digits-cvae", dataset: dict[str, Any] | None = None) -> str:
        with session_scope(ledger_url(client)) as session:
            model = register_model(
                session,
                model_id=str(uuid.uuid4()),
                name=name,
                training_job_id=None,
                checkpoint_uri=f"file:///nowhere/models/{name}/model.pt",
                hyperparameters={"latent_dim": 8},
                metrics={"heldout_neg_elbo": 25.0},
                dataset=DIGITS if dataset is None else dataset,
            )
            return model.id

    return add
