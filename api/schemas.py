"""Request and response bodies of the HTTP API (pydantic), separate from the ORM models.

Requests forbid unknown fields, so a typo or a server-owned field (`state`, `attempts`) is a 422 rather
than something silently ignored. Static bounds here are sanity limits; the deployment's own limits
(settings `max_*`) are checked in the routes and named in the 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthjobs.registry import MODEL_NAME_PATTERN

SEED = Field(default=0, ge=0, le=2**63 - 1, description="Random seed; the same seed gives the same result.")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainHyperparameters(Request):
    """How the CVAE is built and trained."""

    conditioning: Literal["concat", "additive"] = Field(
        default="concat",
        description="concat (default, Sohn et al. 2015): one-hot label joined to the encoder input and to z. "
        "additive: the course design, z + ReLU(Linear(one_hot)), learns the class much more slowly.",
    )
    latent_dim: int = Field(default=8, ge=1, le=4096)
    hidden_dim: int = Field(default=256, ge=4, le=65536)
    epochs: int = Field(default=30, ge=1, le=100_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    beta: float = Field(default=1.0, ge=0, le=1000, description="Weight of the KL term.")


class TrainRequest(Request):
    """Train a CVAE on a dataset."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"dataset": "digits", "hyperparameters": {"epochs": 30}, "seed": 0}]},
    )

    dataset: Literal["digits"] = Field(default="digits", description="digits: scikit-learn's 8x8 digits.")
    model_name: str | None = Field(
        default=None, pattern=MODEL_NAME_PATTERN, description="Registry name; default '<dataset>-cvae'."
    )
    hyperparameters: TrainHyperparameters = Field(default_factory=TrainHyperparameters)
    seed: int = SEED


class SampleRequest(Request):
    """Generate labelled samples from a trained model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "digits-cvae:1", "per_class": 1000, "seed": 0}]},
    )

    model: str = Field(min_length=1, max_length=200, description="A model id or name:version.")
    per_class: int | dict[str, int] = Field(
        description="Samples for every class, or a map of class name (or id) to count."
    )
    seed: int = SEED
    temperature: float = Field(default=1.0, gt=0, le=10, description="Scale of z ~ N(0, T² I).")
    shard_size: int | None = Field(default=None, ge=1, description="Samples per output shard.")
    format: Literal["npz"] = Field(default="npz", description="npz: uint8 `images` and int64 `labels`.")


class JobOut(BaseModel):
    """A job as the ledger holds it."""

    id: str
    kind: str
    state: str
    phase: str
    progress: float
    attempts: int
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    model_config = ConfigDict(from_attributes=True)


class JobPage(BaseModel):
    """A page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """Something that happened to a job."""

    at: datetime
    kind: str
    message: str
    data: dict[str, Any] | None

    model_config = ConfigDict(from_attributes=True)


class ModelOut(BaseModel):
    """A trained model in the registry."""

    id: str
    name: str
    version: int
    training_job_id: str | None
    checkpoint_uri: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    dataset: dict[str, Any]
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)


class ModelList(BaseModel):
    items: list[ModelOut]


class Health(BaseModel):
    """Each dependency's state: `ok`, or why it is down."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str]
