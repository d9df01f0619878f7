"""The registries of job kinds, dataset kinds and output formats: what the callers read from them.

Pure: no services. Each test that registers a throw-away kind removes it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from synthjobs.broker import queue
from synthjobs.errors import DatasetNotFound, InvalidRequest
from synthjobs.plugins import plugin_names
from synthjobs.rules import dataset_kinds, formats, kinds, training_request
from synthjobs.rules.artifacts import artifact_uris
from synthjobs.rules.dataset_kinds import DatasetKind, DatasetSpecModel
from synthjobs.rules.kinds import KindSpec
from synthjobs.rules.sampling import sample_bytes
from synthjobs.rules.training_request import Upload
from synthjobs.settings import Settings


class _Body(BaseModel):
    n: int


@pytest.fixture
def toy_kind() -> Iterator[KindSpec]:
    spec = kinds.register_kind(
        KindSpec(
            name="toy",
            task="synthjobs.test_toy",
            artifacts=("toy_uri",),
            pipeline="somewhere:run",
            request=_Body,
            build=lambda request, settings: dict(request),
        )
    )
    yield spec
    kinds.unregister_kind("toy")


def test_builtin_task_names_are_the_ones_the_broker_publishes() -> None:
    assert kinds.job_task("train") == queue.TRAIN_TASK
    assert kinds.get_kind("sample").task == queue.SAMPLE_SHARD_TASK
    assert set(queue.ALL_TASKS) <= set(queue.all_tasks())


def test_sharded_kind_has_no_job_level_task() -> None:
    with pytest.raises(ValueError, match="publish their shards"):
        kinds.job_task("sample")
    assert kinds.is_sharded("sample") and not kinds.is_sharded("train")
    assert kinds.job_level_kinds() == ["train"] and kinds.sharded_kinds() == ["sample"]


def test_unknown_kind_names_its_missing_plugin_but_reads_stay_lenient() -> None:
    with pytest.raises(kinds.UnknownKind, match="SYNTHJOBS_PLUGINS"):
        kinds.job_task("nope")
    assert not kinds.is_sharded("nope") and not kinds.trains_model("nope")


def test_registered_kind_is_seen_by_every_reader(toy_kind: KindSpec) -> None:
    assert kinds.job_task("toy") == "synthjobs.test_toy"
    assert "toy" in kinds.job_level_kinds() and "toy" in kinds.kind_names()
    assert kinds.generic_kinds() == [toy_kind]
    assert "synthjobs.test_toy" in queue.all_tasks()
    assert "toy_uri" in kinds.artifact_keys()


def test_artifact_listing_reads_the_registered_keys(toy_kind: KindSpec) -> None:
    class _Job:
        kind, deleted_at = "toy", None
        result = {"toy_uri": "s3://b/jobs/1/toy.bin", "lines": 3}

    assert artifact_uris(_Job()) == {"toy.bin": "s3://b/jobs/1/toy.bin"}  # type: ignore[arg-type]


def test_registering_a_different_spec_under_a_taken_name_is_refused(toy_kind: KindSpec) -> None:
    kinds.register_kind(toy_kind)  # the same one again: harmless
    with pytest.raises(ValueError, match="already registered"):
        kinds.register_kind(KindSpec(name="toy", task="other"))


def test_inconsistent_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="sharded"):
        kinds.register_kind(KindSpec(name="bad", task="t", sharded=True, pipeline="m:f"))
    with pytest.raises(ValueError, match="both"):
        kinds.register_kind(KindSpec(name="bad", task="t", request=_Body))
    assert "bad" not in kinds.kind_names()


def test_plugin_names_split_on_commas_and_spaces() -> None:
    assert plugin_names(" a.b, c.d  e ") == ["a.b", "c.d", "e"]
    assert plugin_names("") == []


# --- dataset kinds and the training request -------------------------------------------------------------


class _Dots(DatasetSpecModel):
    kind: Literal["dots"]
    classes: int = 2


@pytest.fixture
def dots_kind() -> Iterator[DatasetKind]:
    kind = dataset_kinds.register_dataset_kind(
        DatasetKind(
            "dots",
            _Dots,
            describe=lambda spec: f"dots:{spec['classes']}",
            known_shape=lambda spec: ((1, 4, 4), int(spec["classes"])),
            loader="somewhere:load",
        )
    )
    yield kind
    dataset_kinds.unregister_dataset_kind("dots")


def _request(dataset: Any, **hyperparameters: Any) -> dict[str, Any]:
    hp = {"epochs": 1, "batch_size": 8, "latent_dim": 2, "hidden_dim": 8, **hyperparameters}
    return {"dataset": dataset, "hyperparameters": hp, "seed": 5, "model_name": None}


def _no_upload(dataset_id: str) -> Upload:
    raise DatasetNotFound(f"no dataset {dataset_id}")


def test_plugin_dataset_kind_builds_params_with_its_own_label_and_name(dots_kind: DatasetKind) -> None:
    params = training_request.train_params(
        _request({"kind": "dots", "classes": 3}), Settings(), "default", find_upload=_no_upload
    )
    assert params["model_name"] == "dots-cvae"
    assert params["dataset"] == {"kind": "dots", "classes": 3}
    assert params["config"]["seed"] == 5
    assert dataset_kinds.describe(params["dataset"]) == "dots:3"


def test_builtin_shorthand_and_names() -> None:
    params = training_request.train_params(_request("digits"), Settings(), "default", find_upload=_no_upload)
    assert params["dataset"] == {"kind": "builtin", "name": "digits"}
    assert params["model_name"] == "digits-cvae"
    folder = {"kind": "image_folder", "url": "file:///data/x"}
    assert training_request.default_model_name(folder) == "image-folder-cvae"
    assert dataset_kinds.describe(folder) == "image_folder:file:///data/x"


def test_limits_and_refusals_name_their_field() -> None:
    settings = Settings(max_epochs=3)
    with pytest.raises(InvalidRequest) as limit:
        training_request.train_params(_request("digits", epochs=4), settings, "t", find_upload=_no_upload)
    assert limit.value.loc == ("hyperparameters", "epochs") and limit.value.kind == "limit"
    upload = {"kind": "uploaded", "id": "0" * 36}
    with pytest.raises(InvalidRequest) as missing:
        training_request.train_params(_request(upload), settings, "t", find_upload=_no_upload)
    assert missing.value.loc == ("dataset", "id") and missing.value.kind == "not_found"
    tv = {"kind": "torchvision", "name": "MNIST", "root": "/data", "download": True}
    with pytest.raises(InvalidRequest) as download:
        training_request.train_params(_request(tv), settings, "t", find_upload=_no_upload)
    assert download.value.loc == ("dataset", "download")


def test_upload_gets_its_uri_and_its_shape_bounds_the_model() -> None:
    found = Upload("file:///s/datasets/x.npz", {"channels": 1, "height": 8, "width": 8})
    spec, upload = training_request.dataset_spec(
        {"kind": "uploaded", "id": "1" * 36}, Settings(), "t", find_upload=lambda _: found
    )
    assert spec["uri"] == found.uri and upload is found
    assert training_request.submit_image_shape(spec, upload) == ((1, 8, 8), 2)
    assert training_request.submit_image_shape(spec, Upload("u", None)) is None


def test_builtin_dataset_kinds_have_their_schemas() -> None:
    names = {kind.name for kind in dataset_kinds.dataset_kinds()}
    assert {"builtin", "torchvision", "image_folder", "uploaded"} <= names
    with pytest.raises(KeyError, match="SYNTHJOBS_PLUGINS"):
        dataset_kinds.get_dataset_kind("nope")


# --- output formats --------------------------------------------------------------------------------------


def test_output_formats_bound_their_sample_sizes() -> None:
    assert set(formats.FORMATS) == {"npz", "webdataset"}
    assert formats.get_format("webdataset").extension == "tar"
    assert sample_bytes([1, 8, 8], "npz") == 64 + 8
    assert sample_bytes([1, 8, 8], "webdataset") == 512 * 4  # header + padded PNG, header + .cls
    assert sample_bytes(None, "npz") is None
    with pytest.raises(ValueError, match="unknown output format"):
        formats.get_format("csv")
