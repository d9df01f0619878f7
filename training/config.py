"""The one frozen record of every hyperparameter of a training run.

It is saved inside each checkpoint (as `to_dict()`), so a model can be rebuilt from the file alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

CONDITIONINGS = ("concat", "additive")
ARCHITECTURES = ("auto", "mlp", "conv")
MAX_DATASET_LABEL = 200
# Bounds of a DP-SGD request. Above epsilon 100 the guarantee means nothing; delta must stay far below 1/N.
MAX_EPSILON = 100.0
MAX_DELTA = 1e-2
MAX_GRAD_NORM = 1000.0
PRIVACY_KEYS = ("epsilon", "delta", "max_grad_norm")


@dataclass(frozen=True)
class PrivacyConfig:
    """A differential-privacy request: train with DP-SGD to an (epsilon, delta) budget.

    `max_grad_norm` is the per-sample gradient clipping bound C. The noise multiplier is derived so that the
    whole run (all `epochs`) spends exactly `epsilon` at `delta` (see `training.dp`).
    """

    epsilon: float = 10.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name, upper in (("epsilon", MAX_EPSILON), ("delta", MAX_DELTA), ("max_grad_norm", MAX_GRAD_NORM)):
            value = getattr(self, name)
            _require_number(f"privacy.{name}", value, positive=True)
            if value > upper:
                raise ValueError(f"privacy.{name} must be <= {upper}, got {value}")

    @classmethod
    def from_value(cls, value: Any) -> PrivacyConfig:
        """Build from a PrivacyConfig or a dict with keys among PRIVACY_KEYS (unknown keys raise)."""
        if isinstance(value, PrivacyConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"privacy must be an object with {', '.join(PRIVACY_KEYS)}, got {value!r}")
        unknown = sorted(set(value) - set(PRIVACY_KEYS))
        if unknown:
            raise ValueError(f"unknown privacy keys: {', '.join(unknown)}")
        return cls(**value)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one CVAE training run; validated on construction.

    `dataset` is a free-form label recorded with the model (the caller builds the ImageDataset and passes it
    to `train`). `conditioning` picks how the label reaches the model: "concat" (Sohn et al. 2015, label
    concatenated to the encoder input and to z) or "additive" (the course design, label projected and added
    to z). `architecture` is "mlp", "conv" or "auto" (conv when H and W are both >= 16 and divisible by 4,
    see `training.model.resolve_architecture`). `kl_warmup_epochs` ramps the KL weight from 0 to `beta`
    (see `training.train.kl_weight`). `amp` trains in bf16 autocast on CUDA and is ignored on CPU.
    `checkpoint_every` is in epochs. `privacy` (None: off) trains with DP-SGD through Opacus.
    `eval_every` measures the held-out -ELBO every N epochs (and always after the last one); the other
    epochs record None. It changes nothing else in the run (weights and random streams are the same), and
    `to_dict` leaves it out at its default of 1, so a default run's records are what they were before it.

    The defaults (latent 16, beta 0.5, 100 epochs of batch 32) were tuned on the digits validation split
    (`bench/quality_sweep.py`, issue 13 section 4), aiming at TSTR within one point of TRTR on test
    (measured -1.5 +- 0.9 over three seeds), conditional accuracy >= 99 %, pixel DCR share about 0.5.
    They were latent 8, beta 1, 30 epochs of batch 64, which trained in a quarter of the time but left
    TSTR about 3 points below TRTR (bench/README.md).
    """

    dataset: str = "digits"
    conditioning: str = "concat"
    latent_dim: int = 16
    hidden_dim: int = 256
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    beta: float = 0.5
    seed: int = 0
    checkpoint_every: int = 1
    architecture: str = "auto"
    kl_warmup_epochs: int = 0
    amp: bool = False
    privacy: PrivacyConfig | None = None
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.privacy is not None:
            object.__setattr__(self, "privacy", PrivacyConfig.from_value(self.privacy))
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")
        if len(self.dataset) > MAX_DATASET_LABEL:
            raise ValueError(
                f"dataset must be at most {MAX_DATASET_LABEL} characters, got {len(self.dataset)}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if not isinstance(self.amp, bool):
            raise ValueError(f"amp must be true or false, got {self.amp!r}")
        _require_int("kl_warmup_epochs", self.kl_warmup_epochs, minimum=0)
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}"
            )
        for name in ("latent_dim", "hidden_dim", "epochs", "batch_size", "checkpoint_every", "eval_every"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("seed", self.seed, minimum=0)
        _require_number("learning_rate", self.learning_rate, positive=True)
        _require_number("beta", self.beta, positive=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-able primitives (str, int, float); `eval_every` only when not 1."""
        values = dataclasses.asdict(self)
        if self.eval_every == 1:
            del values["eval_every"]  # the default: checkpoints and model records stay as they were
        return values

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from `to_dict()` output.

        Unknown keys raise rather than being dropped: a silently ignored hyperparameter would make a run
        differ from what was asked for. Missing keys take their defaults.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {', '.join(unknown)}")
        return cls(**d)


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    # bool is an int subclass; True as an epoch count is a caller bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_number(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
