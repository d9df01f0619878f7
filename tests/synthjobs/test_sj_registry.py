"""The model registry: numbered versions per name, idempotent registration, lookup by id or name:version."""

from __future__ import annotations

import threading
import uuid

import pytest

from synthjobs.errors import ModelNotFound
from synthjobs.ledger import jobs, registry
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind

DATASET = {"class_names": [str(i) for i in range(10)]}


def _register(url: str, name: str, model_id: str | None = None, training_job_id: str | None = None) -> str:
    with session_scope(url) as session:
        model = registry.register_model(
            session,
            model_id=model_id or str(uuid.uuid4()),
            name=name,
            training_job_id=training_job_id,
            checkpoint_uri=f"file:///models/{name}/model.pt",
            hyperparameters={"epochs": 2},
            metrics={"heldout_neg_elbo": 25.0},
            dataset=DATASET,
        )
        return model.id


def _versions(url: str, name: str) -> list[int]:
    with session_scope(url) as session:
        return sorted(model.version for model in registry.list_models(session, name=name))


def test_model_id_for_job_is_deterministic_and_distinct_per_job() -> None:
    job_a, job_b = str(uuid.uuid4()), str(uuid.uuid4())
    assert registry.model_id_for_job(job_a) == registry.model_id_for_job(job_a)
    assert registry.model_id_for_job(job_a) != registry.model_id_for_job(job_b)
    assert uuid.UUID(registry.model_id_for_job(job_a)).version == 5


def test_model_id_for_job_is_stable_across_releases() -> None:
    # A retried task of an old job must find the model it registered before an upgrade.
    job_id = "11111111-2222-4333-8444-555555555555"
    expected = str(uuid.uuid5(uuid.UUID("5b1f0f9e-8d57-4f0c-9d2a-2f8f4e1f6a11"), job_id))
    assert registry.model_id_for_job(job_id) == expected


def test_versions_count_up_from_one_under_a_name(database_url: str) -> None:
    for _ in range(3):
        _register(database_url, "digits-cvae")
    assert _versions(database_url, "digits-cvae") == [1, 2, 3]


def test_each_name_has_its_own_version_numbers(database_url: str) -> None:
    _register(database_url, "digits-cvae")
    _register(database_url, "other")
    _register(database_url, "digits-cvae")
    _register(database_url, "other")
    _register(database_url, "third")
    assert _versions(database_url, "digits-cvae") == [1, 2]
    assert _versions(database_url, "other") == [1, 2]
    assert _versions(database_url, "third") == [1]


def test_racing_registrations_under_one_name_get_distinct_versions_on_postgres(postgres_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def register() -> None:
        try:
            barrier.wait(timeout=10)
            _register(postgres_url, "digits-cvae")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert _versions(postgres_url, "digits-cvae") == [1, 2, 3, 4]


def test_registering_the_same_model_id_twice_returns_the_existing_model(database_url: str) -> None:
    with session_scope(database_url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id
    model_id = registry.model_id_for_job(job_id)
    first = _register(database_url, "digits-cvae", model_id, training_job_id=job_id)
    again = _register(database_url, "digits-cvae", model_id, training_job_id=job_id)
    assert first == again == model_id
    assert _versions(database_url, "digits-cvae") == [1]
    with session_scope(database_url) as session:
        model = registry.get_model(session, model_id)
        assert model.training_job_id == job_id and model.dataset == DATASET


def test_resolve_model_by_id_and_by_name_and_version(database_url: str) -> None:
    first = _register(database_url, "digits-cvae")
    second = _register(database_url, "digits-cvae")
    with session_scope(database_url) as session:
        assert registry.resolve_model(session, first).version == 1
        assert registry.resolve_model(session, second).id == second
        assert registry.resolve_model(session, "digits-cvae:1").id == first
        assert registry.resolve_model(session, "digits-cvae:2").id == second


UNKNOWN_REFS = [
    "00000000-0000-4000-8000-000000000000",
    "digits-cvae:3",
    "digits-cvae:0",
    "digits-cvae",
    "digits-cvae:",
    "digits-cvae:one",
    "digits-cvae@champion",
    "other:1",
    ":1",
    "",
]


def test_resolve_of_an_unknown_reference_raises_model_not_found(database_url: str) -> None:
    _register(database_url, "digits-cvae")
    _register(database_url, "digits-cvae")
    for ref in UNKNOWN_REFS:
        with session_scope(database_url) as session, pytest.raises(ModelNotFound):
            registry.resolve_model(session, ref)


def test_resolve_of_a_unicode_digit_version_raises_model_not_found(sqlite_url: str) -> None:
    _register(sqlite_url, "digits-cvae")
    with session_scope(sqlite_url) as session, pytest.raises(ModelNotFound):
        registry.resolve_model(session, "digits-cvae:\u00b2")


def test_get_model_of_an_unknown_id_raises_model_not_found(database_url: str) -> None:
    for model_id in ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "", "digits-cvae:1"]:
        with session_scope(database_url) as session, pytest.raises(ModelNotFound):
            registry.get_model(session, model_id)


def test_list_models_filters_by_name_newest_first(database_url: str) -> None:
    ids = [_register(database_url, name) for name in ("a", "b", "a", "a")]
    with session_scope(database_url) as session:
        only_a = registry.list_models(session, name="a")
        assert [(m.name, m.version) for m in only_a] == [("a", 3), ("a", 2), ("a", 1)]
        assert {m.id for m in registry.list_models(session)} == set(ids)
        assert [m.name for m in registry.list_models(session, name="b")] == ["b"]
        assert registry.list_models(session, name="missing") == []
        assert len(registry.list_models(session, limit=2)) == 2
