"""Request and response bodies of the HTTP API (pydantic), separate from the ORM models.

Requests forbid unknown fields, so a typo or a server-owned field (`state`, `attempts`) is a 422 rather
than something silently ignored. Static bounds here are sanity limits; the deployment's own limits
(settings `max_*`) are checked in the routes and named in the 422.

Every number has an upper bound and every float is finite, so no request can overflow a SQL column or a
float conversion further on; every string, dict keys included, is text every store can hold (`api.text`).
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.text import refuse_unstorable_text
from synthjobs.ledger.registry import MODEL_NAME_PATTERN
from synthjobs.plugins import load_plugins
from synthjobs.rules import dataset_kinds
from synthjobs.rules.artifacts import hide_storage_root
from synthjobs.rules.fair_share import DEFAULT_PRIORITY, Priority
from synthjobs.rules.formats import DEFAULT_FORMAT, FormatName, describe_formats

# The storage URL of the app answering this request (`api.app` sets it per request). Responses name local
# objects by storage key: where the server keeps its files is not the user's to know.
STORAGE_URL: ContextVar[str] = ContextVar("synthjobs_storage_url", default="")


def _public(value: Any) -> Any:
    return hide_storage_root(value, STORAGE_URL.get())


SEED = Field(default=0, ge=0, le=2**63 - 1, description="Random seed; the same seed gives the same result.")


SCHEDULE_PRIORITY_HELP = (
    "low, normal or high: the priority of every job this schedule creates (its training and follow-up "
    "sampling jobs); unset, the training job has `train.priority` and the follow-up normal."
)
PRIORITY_HELP = (
    "low, normal or high: orders this tenant's jobs when workers are busy (tenants share them fairly)."
)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        """422 at the exact field (or dict key) of a lone surrogate or NUL, before it reaches SQL or a log."""
        return refuse_unstorable_text(cls.__name__, data)


MAX_SAMPLES = 10**12  # per_class and total; the deployment's max_samples_per_job is checked in the route
MAX_SQL_INT = 2**31 - 1  # an INTEGER column on PostgreSQL: model versions, shard sizes
MAX_RUNTIME_SECONDS = 366 * 24 * 3600  # the deployment's max_runtime_seconds is checked in the route
MAX_PROPORTION = 1e12
Count = Annotated[int, Field(le=MAX_SAMPLES)]
Proportion = Annotated[float, Field(le=MAX_PROPORTION, allow_inf_nan=False)]
# A fraction in [0, 1]: the privacy ceilings of a sampling job's gate and of the promotion policy.
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


NotifyEvent = Literal["job.succeeded", "job.failed", "job.cancelled"]


class NotifyIn(Request):
    """Where to POST this job's events, signed like a webhook endpoint's (a secret shown once)."""

    url: str = Field(min_length=1, max_length=2000, examples=["https://hooks.example.com/synthjobs"])
    events: list[NotifyEvent] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Event types to send; left out, every terminal one (succeeded, failed, cancelled).",
    )


class NotifyOut(BaseModel):
    """A job's or schedule's `notify`; `secret` only in the response that created it, never again."""

    url: str
    events: list[str]
    secret: str | None = Field(default=None, description="Signs every delivery; shown once.")


NOTIFY_HELP = "POST this job's terminal events (signed) to this URL: see Notifications in the README."


class PrivacyHyperparameters(Request):
    """Differential privacy: DP-SGD (Opacus), so the model is (epsilon, delta)-DP on its train split."""

    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False, description="Privacy budget of the whole run.")
    delta: float = Field(
        default=1e-5, gt=0, le=1e-2, allow_inf_nan=False, description="Should be well below 1 / train size."
    )
    max_grad_norm: float = Field(
        default=1.0, gt=0, le=1000, allow_inf_nan=False, description="Per-sample gradient clipping bound."
    )


class TrainHyperparameters(Request):
    """How the CVAE is built and trained."""

    conditioning: Literal["concat", "additive"] = Field(
        default="concat",
        description="concat (default, Sohn et al. 2015): one-hot label joined to the encoder input and to z. "
        "additive: the course design, z + ReLU(Linear(one_hot)), learns the class much more slowly.",
    )
    latent_dim: int = Field(default=16, ge=1, le=4096)
    hidden_dim: int = Field(default=256, ge=4, le=65536)
    epochs: int = Field(default=100, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=1, le=1_000_000)
    learning_rate: float = Field(default=1e-3, gt=0, le=1, allow_inf_nan=False)
    beta: float = Field(default=0.5, ge=0, le=1000, allow_inf_nan=False, description="Weight of the KL term.")
    kl_warmup_epochs: int = Field(
        default=0, ge=0, le=100_000, description="Epochs over which β ramps up from 0."
    )
    architecture: Literal["auto", "mlp", "conv"] = Field(
        default="auto", description="auto: convolutional for images of 16x16 and larger, MLP below."
    )
    amp: bool = Field(default=False, description="bf16 autocast on CUDA (ignored on CPU).")
    checkpoint_every: int = Field(default=1, ge=1, le=100_000, description="Checkpoint every N epochs.")
    eval_every: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Measure the held-out -ELBO every N epochs (the last epoch always); the others record "
        "null. Saves its cost per epoch (~12 % of a 28x28 conv epoch on CPU); changes nothing else.",
    )
    privacy: PrivacyHyperparameters | None = Field(
        default=None,
        description="DP-SGD to this budget (needs the worker's 'dp' extra); null trains without noise. The "
        "evaluation classifier, TSTR and the privacy report read real data and are outside the guarantee.",
    )


# The dataset spec union comes from the table of dataset kinds, `synthjobs.rules.dataset_kinds` (plugins'
# kinds too, so they load first: the union is fixed when this module is imported).
load_plugins(env_only=True)
if TYPE_CHECKING:
    DatasetSpec = BaseModel
else:
    DatasetSpec = Annotated[
        Union[tuple(kind.schema for kind in dataset_kinds.dataset_kinds())],  # noqa: UP007 - built at run time
        Field(discriminator="kind"),
    ]


class TrainRequest(Request):
    """Train a CVAE on a dataset."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"dataset": "digits", "hyperparameters": {"epochs": 30}, "seed": 0}]},
    )

    dataset: Literal["digits"] | DatasetSpec = Field(
        default="digits", description="'digits' (scikit-learn's 8x8 digits) or a dataset spec with a `kind`."
    )
    model_name: str | None = Field(
        default=None, pattern=MODEL_NAME_PATTERN, description="Registry name; default '<dataset>-cvae'."
    )
    hyperparameters: TrainHyperparameters = Field(default_factory=TrainHyperparameters)
    seed: int = SEED
    max_runtime_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RUNTIME_SECONDS,
        description="Stop (keeping the last checkpoint) and fail past this; default and most: the "
        "deployment's max_runtime_seconds.",
    )
    priority: Priority = Field(default=DEFAULT_PRIORITY, description=PRIORITY_HELP)
    notify: NotifyIn | None = Field(default=None, description=NOTIFY_HELP)


class PrivacyGateIn(Request):
    """Privacy ceilings of a sampling job: it fails with the figure instead of delivering past one."""

    max_dcr_share: Share | None = Field(
        default=None,
        description="Most DCR share allowed (worse of pixel / feature space); about 0.5 is no memorisation.",
    )
    max_near_copies: Share | None = Field(
        default=None,
        description="Most share of samples closer to a training image than real images are to each other.",
    )


class SampleRequest(Request):
    """Generate labelled samples from a trained model: `per_class` counts, or a `total` and a distribution."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "digits-cvae@champion", "per_class": 1000, "seed": 0},
                {
                    "model": "digits-cvae:2",
                    "total": 1000000,
                    "distribution": {"3": 0.5, "8": 0.5},
                    "format": "webdataset",
                    "shard_size": 50000,
                    "seed": 7,
                },
            ]
        },
    )

    model: str = Field(min_length=1, max_length=200, description="A model id, name:version or name@alias.")
    per_class: Count | dict[str, Count] | None = Field(
        default=None, description="Samples for every class, or a map of class name (or id) to count."
    )
    total: int | None = Field(
        default=None, ge=1, le=MAX_SAMPLES, description="Samples in all, split by `distribution`."
    )
    distribution: Literal["uniform"] | dict[str, Proportion] = Field(
        default="uniform", description="With `total`: uniform, or a map of class name (or id) to proportion."
    )
    seed: int = SEED
    temperature: float = Field(
        default=1.0, gt=0, le=10, allow_inf_nan=False, description="Scale of z ~ N(0, T² I)."
    )
    shard_size: int | None = Field(
        default=None, ge=1, le=MAX_SQL_INT, description="Samples per output shard."
    )
    format: FormatName = Field(default=DEFAULT_FORMAT, description=describe_formats())
    quality: Literal["basic", "tstr"] = Field(
        default="basic", description="basic: conditional accuracy of a subset; tstr: also TSTR on real data."
    )
    quality_samples: int = Field(default=2000, ge=0, le=100_000, description="Samples scored for quality.")
    privacy: PrivacyGateIn | None = Field(
        default=None, description="Fail the job instead of delivering when its privacy report exceeds these."
    )
    shuffle: bool = Field(
        default=True,
        description="Shuffle each shard's samples (deterministic per seed and shard); false: class order.",
    )
    priority: Priority = Field(default=DEFAULT_PRIORITY, description=PRIORITY_HELP)
    notify: NotifyIn | None = Field(default=None, description=NOTIFY_HELP)


class ShardOut(BaseModel):
    """One shard of a sampling job; `key`, `sha256` and `bytes` are set once it is written."""

    index: int
    state: str
    count: int
    attempts: int
    key: str | None
    sha256: str | None
    bytes: int | None

    model_config = ConfigDict(from_attributes=True)


class WaitOut(BaseModel):
    """Why a job waits, counted inside your tenant only."""

    reason: str = Field(description="e.g. 'queued: 3 jobs of yours ahead', 'waiting for a free worker'.")
    position: int | None = Field(
        default=None,
        description="1 for the next of your jobs to go; absent where a place in line means nothing.",
    )


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
    priority: str = Field(default=DEFAULT_PRIORITY, description=PRIORITY_HELP)
    error_code: str | None = Field(
        default=None,
        description="Why a FAILED job failed, for programs: internal_error, job_failed, dataset_error, "
        "training_diverged, model_not_found, worker_lost, ... (`error` says it for people).",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delete_requested_at: datetime | None = Field(
        default=None, description="When DELETE was asked for; the outputs go once no worker writes."
    )
    deleted_at: datetime | None = Field(
        default=None, description="When the job's outputs were deleted (the row is kept)."
    )
    eta_seconds: float | None = Field(
        default=None,
        description="Estimated seconds left: from the pace so far while it runs; while QUEUED (GET of one "
        "job), the jobs of yours ahead and its own run, each at your recent typical run time.",
    )
    wait: WaitOut | None = Field(
        default=None,
        description="GET of one job: why a QUEUED job, or a running sampling job's remaining shards, waits.",
    )
    notify: NotifyOut | None = Field(default=None, description="Where its events are POSTed.")
    shards: list[ShardOut] | None = Field(
        default=None,
        description="Sampling jobs (GET of one job): every shard, with key and sha256 once written.",
    )

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="after")
    def _hide_storage_root(self) -> JobOut:
        self.params, self.result, self.error = _public(self.params), _public(self.result), _public(self.error)
        return self


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

    @model_validator(mode="after")
    def _hide_storage_root(self) -> EventOut:
        self.message, self.data = _public(self.message), _public(self.data)
        return self


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
    aliases: list[str] = Field(default_factory=list)

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="after")
    def _hide_storage_root(self) -> ModelOut:
        self.checkpoint_uri, self.dataset = _public(self.checkpoint_uri), _public(self.dataset)
        return self


class AliasRequest(Request):
    """Which version of the model name the alias should point at: by version number or model id."""

    version: int | None = Field(default=None, ge=1, le=MAX_SQL_INT)
    model_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")
    reason: str = Field(default="", max_length=1000)


class AliasOut(BaseModel):
    name: str
    alias: str
    model_id: str
    version: int
    updated_at: datetime


class AliasEventOut(BaseModel):
    from_model_id: str | None
    to_model_id: str | None
    actor: str
    reason: str
    at: datetime

    model_config = ConfigDict(from_attributes=True)


class DatasetOut(BaseModel):
    """An uploaded dataset."""

    id: str
    name: str
    uri: str
    bytes: int
    sha256: str
    num_images: int
    image_shape: dict[str, Any]
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="after")
    def _hide_storage_root(self) -> DatasetOut:
        self.uri = _public(self.uri)
        return self


class ModelList(BaseModel):
    items: list[ModelOut]


class Health(BaseModel):
    """Each dependency's state, `ok` or `down` (why is in the API's log, never in this answer)."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str]


class PolicyIn(Request):
    """When a newly trained model replaces the champion (fractions: 0.005 is half a point)."""

    min_tstr_gain: float = Field(default=0.005, ge=0, le=1, allow_inf_nan=False)
    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1, allow_inf_nan=False)
    skip_unchanged_data: bool = Field(
        default=False, description="Skip retraining when the data is unchanged."
    )
    max_dcr_share: Share | None = Field(
        default=None,
        description="Refuse a challenger whose DCR share (worse of pixel / feature space) exceeds this.",
    )
    max_near_copies: Share | None = Field(
        default=None,
        description="Refuse a challenger whose share of near copies of training images exceeds this.",
    )


class SampleFollowUp(Request):
    """A sampling job submitted with the new champion each time a scheduled run promotes one."""

    per_class: Count | dict[str, Count] | None = None
    total: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    distribution: Literal["uniform"] | dict[str, Proportion] = "uniform"
    seed: int = SEED
    temperature: float = Field(default=1.0, gt=0, le=10, allow_inf_nan=False)
    shard_size: int | None = Field(default=None, ge=1, le=MAX_SQL_INT)
    format: Literal["npz", "webdataset"] = "npz"
    quality: Literal["basic", "tstr"] = "basic"
    quality_samples: int = Field(default=2000, ge=0, le=100_000)
    privacy: PrivacyGateIn | None = None


class ScheduleRequest(Request):
    """Retrain a model name on a cron schedule, with a champion/challenger gate."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "nightly-digits",
                    "cron": "0 3 * * *",
                    "timezone": "Europe/Berlin",
                    "model_name": "digits-cvae",
                    "train": {"dataset": "digits", "hyperparameters": {"epochs": 30}},
                    "policy": {"min_tstr_gain": 0.005},
                    "sample": {"per_class": 10000},
                }
            ]
        },
    )

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    cron: str = Field(min_length=1, max_length=200, description="5 fields (minute hour day month weekday).")
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone the cron is read in.")
    model_name: str = Field(pattern=MODEL_NAME_PATTERN)
    train: TrainRequest
    policy: PolicyIn = Field(default_factory=PolicyIn)
    sample: SampleFollowUp | None = None
    priority: Priority | None = Field(default=None, description=SCHEDULE_PRIORITY_HELP)
    notify: NotifyIn | None = Field(
        default=None, description="Every run's jobs POST their events here, signed with one secret."
    )


class SchedulePatch(Request):
    """Pause, resume, or change a schedule; fields left out stay as they are."""

    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    paused: bool | None = None
    train: TrainRequest | None = None
    policy: PolicyIn | None = None
    sample: SampleFollowUp | None = None
    priority: Priority | None = Field(default=None, description=SCHEDULE_PRIORITY_HELP)


class ScheduleOut(BaseModel):
    id: str
    name: str
    cron: str
    timezone: str
    model_name: str
    train: dict[str, Any]
    sample: dict[str, Any] | None
    policy: dict[str, Any]
    priority: str | None
    paused: bool
    notify: NotifyOut | None = None
    next_due_at: datetime
    last_due_at: datetime | None
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)


class ScheduleRunOut(BaseModel):
    """One firing: the training job it created and what came of it (promoted, kept, skipped)."""

    id: int
    due_at: datetime
    fired_at: datetime
    fired_by: str
    job_id: str | None
    outcome: str
    decision: dict[str, Any] | None
    sample_job_id: str | None

    model_config = ConfigDict(from_attributes=True)


class DeletionOut(JobOut):
    """A job after DELETE: `deletion` is `done` once its outputs are gone, `pending` while a worker stops."""

    deletion: str
    removed_objects: int
    removed_bytes: int


EventType = Literal["job.succeeded", "job.failed", "job.cancelled", "model.promoted"]


class WebhookRequest(BaseModel):
    """An endpoint to POST signed events to: an https URL on a public address (unless allow-listed)."""

    url: str = Field(min_length=1, max_length=2000, examples=["https://hooks.example.com/synthjobs"])
    event_types: list[EventType] = Field(min_length=1, max_length=len(EventType.__args__))  # type: ignore[attr-defined]
    description: str = Field(default="", max_length=200)

    model_config = ConfigDict(extra="forbid")


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)


class WebhookCreated(WebhookOut):
    """The new endpoint with its signing secret: shown this once, never again."""

    secret: str


class WebhookDeliveryOut(BaseModel):
    """One event for this endpoint: every attempt counted, the last one's answer."""

    id: str
    event_id: str
    event_type: str
    job_id: str | None
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None

    model_config = ConfigDict(from_attributes=True)
