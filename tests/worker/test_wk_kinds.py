"""The worker's halves of the registries: a writer per output format, a loader per dataset kind, a task
per plugin job kind."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pytest

from synthjobs.errors import JobFailure
from synthjobs.rules import dataset_kinds, formats, kinds
from synthjobs.rules.dataset_kinds import DatasetKind, DatasetSpecModel
from synthjobs.rules.kinds import KindSpec
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from training.data import ImageDataset, dataset_from_arrays
from worker import formats as writers
from worker.pipelines.datasets import LOADERS, describe, load_training_data


class _Dots(DatasetSpecModel):
    kind: Literal["dots"]


def load_dots(spec: dict[str, Any], settings: Settings, storage: Any, tenant: str) -> ImageDataset:
    labels = np.repeat(np.arange(2), 4)
    images = np.zeros((8, 4, 4), dtype=np.uint8)
    images[labels == 1] = 200
    return dataset_from_arrays(images, labels, ["dark", "light"])


@pytest.fixture
def dots_kind() -> Iterator[None]:
    dataset_kinds.register_dataset_kind(
        DatasetKind("dots", _Dots, describe=lambda spec: "dots", loader=f"{__name__}:load_dots")
    )
    yield
    dataset_kinds.unregister_dataset_kind("dots")


def test_every_output_format_has_a_writer_and_its_extension() -> None:
    assert set(writers.WRITERS) == set(formats.FORMATS)
    assert writers.EXTENSIONS == {"npz": "npz", "webdataset": "tar"}
    images, labels = np.zeros((2, 4, 4), dtype=np.uint8), np.array([0, 1])
    for name in formats.FORMATS:
        stream = io.BytesIO()
        writers.write_shard(stream, name, images, labels, "job-00000")
        assert stream.getvalue()
    with pytest.raises(ValueError, match="unknown output format"):
        writers.write_shard(io.BytesIO(), "csv", images, labels, "x")


def test_every_builtin_dataset_kind_has_a_loader() -> None:
    builtin = {"builtin", "torchvision", "image_folder", "uploaded"}
    assert builtin <= {kind.name for kind in dataset_kinds.dataset_kinds()}
    assert set(LOADERS) == builtin


def test_plugin_dataset_kind_loads_through_the_loader_its_spec_names(dots_kind: None, tmp_path: Any) -> None:
    settings = Settings(home=tmp_path)
    data = load_training_data({"kind": "dots"}, settings, open_storage(settings), tenant="default")
    assert list(data.class_names) == ["dark", "light"]
    assert describe({"kind": "dots"}) == "dots"


def test_unknown_dataset_kind_fails_the_job_readably(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(JobFailure, match="unknown dataset kind 'nope'"):
        load_training_data({"kind": "nope"}, settings, open_storage(settings), tenant="default")


def test_plugin_job_kind_gets_a_celery_task_of_its_name() -> None:
    from worker import tasks

    kinds.register_kind(KindSpec(name="toy", task="synthjobs.test_toy_wk", pipeline=f"{__name__}:load_dots"))
    try:
        assert tasks.bind_job_kinds() == ["synthjobs.test_toy_wk"]
        assert "synthjobs.test_toy_wk" in tasks.app.tasks
        assert tasks.resolve_pipeline(f"{__name__}:load_dots") is load_dots
    finally:
        kinds.unregister_kind("toy")
