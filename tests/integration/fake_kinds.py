"""A test-only plugin: one fake job kind and one fake dataset kind, each registered in this one place.

Load it in the API and in every worker with `SYNTHJOBS_PLUGINS=tests.integration.fake_kinds` (run from the
repository root, or with it on PYTHONPATH); `synthjobs.plugins.load_plugins` imports it and the import
registers:

- the job kind `echo`: submitted with `POST /v1/jobs/echo` (`EchoRequest`), run by the worker as one task
  (`synthjobs.test_echo`) whose pipeline `run_echo` writes `jobs/{id}/echo.txt` and lists it as the
  artifact `echo_uri`;
- the dataset kind `stripes`: `{"kind": "stripes", "classes": K, "per_class": N}` in a training request,
  K classes of 8x8 greyscale images with a bright row at the class's index, made by `load_stripes`.

The worker-side functions are named by `module:function` strings, so importing this module in the API
imports nothing of the worker and no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthjobs.errors import InvalidRequest
from synthjobs.rules.dataset_kinds import DatasetKind, DatasetSpecModel, register_dataset_kind
from synthjobs.rules.kinds import KindSpec, register_kind
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from synthjobs.storage.base import Storage
    from training.data import ImageDataset
    from worker.context import JobContext

ECHO_TASK = "synthjobs.test_echo"
ECHO_LIMIT = 1000


class EchoRequest(BaseModel):
    """Echo a message `repeat` times into a stored text file."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=200)
    repeat: int = Field(default=1, ge=1, le=10_000)


def build_echo(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The job's params; a deployment-style limit refused with a 422 at `repeat`."""
    if request["repeat"] > ECHO_LIMIT:
        raise InvalidRequest(("repeat",), f"repeat {request['repeat']} is above {ECHO_LIMIT}", "limit")
    return {"message": request["message"], "repeat": request["repeat"]}


def run_echo(ctx: JobContext) -> dict[str, Any]:
    """The worker's pipeline: write the echoed text, report progress, return the artifact's URI."""
    ctx.progress(0.5, "echoing", force=True)
    ctx.raise_if_stopped()
    text = "\n".join([ctx.params["message"]] * int(ctx.params["repeat"])) + "\n"
    uri = ctx.storage.put_bytes(f"jobs/{ctx.job_id}/echo.txt", text.encode(), "text/plain")
    return {"echo_uri": uri, "lines": int(ctx.params["repeat"])}


ECHO = register_kind(
    KindSpec(
        name="echo",
        task=ECHO_TASK,
        artifacts=("echo_uri",),
        pipeline=f"{__name__}:run_echo",
        request=EchoRequest,
        build=build_echo,
        description="Echo a message into a file (a test-only job kind).",
    )
)


class StripesDataset(DatasetSpecModel):
    """K classes of 8x8 images, class k with a bright row k."""

    kind: Literal["stripes"]
    classes: int = Field(default=3, ge=2, le=8)
    per_class: int = Field(default=40, ge=4, le=1000)


def load_stripes(spec: dict[str, Any], settings: Settings, storage: Storage, tenant: str) -> ImageDataset:
    """The worker's loader (numpy and training/ are imported here, in the worker only)."""
    import numpy as np

    from training.data import dataset_from_arrays

    rng = np.random.default_rng(0)
    classes, per_class = int(spec["classes"]), int(spec["per_class"])
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 40, size=(len(labels), 8, 8), dtype=np.uint8)
    images[np.arange(len(labels)), labels, :] = 250  # row k lit for class k
    return dataset_from_arrays(images, labels, [f"stripe{k}" for k in range(classes)])


STRIPES = register_dataset_kind(
    DatasetKind(
        "stripes",
        StripesDataset,
        describe=lambda spec: f"stripes:{spec['classes']}x{spec['per_class']}",
        known_shape=lambda spec: ((1, 8, 8), int(spec["classes"])),
        loader=f"{__name__}:load_stripes",
    )
)
