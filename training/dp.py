"""DP-SGD for the CVAE through Opacus: per-sample clipping, Gaussian noise, Poisson batches, RDP accounting.

Opacus is an optional extra (`pip install 'synthjobs[dp]'`); this module imports it only when a run asks
for privacy, so a worker without it trains non-private models as before and fails private ones with
`DPUnavailable`.

What the guarantee covers: the CVAE's weights (and so every sample drawn from them) are (epsilon, delta)-DP
with respect to the *training split*, by DP-SGD (Abadi et al. 2016) with the noise multiplier chosen, like
Opacus's `make_private_with_epsilon`, so that all `epochs` of Poisson-sampled batches (rate q = batch_size /
N) spend exactly the target epsilon under the RDP accountant. What it does not cover: the evaluation
classifier (trained on the real training split without noise), TSTR, the held-out ELBO, the privacy and
fidelity reports (all read real data directly) and the dataset's size and class names.

Batches are drawn by Poisson sampling from the run's CPU generator (each image joins each step with
probability q), so a DP run is as deterministic and resumable as a non-private one: the accountant's state
after k epochs is a function of (sigma, q, k * steps_per_epoch) alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.config import PrivacyConfig

ACCOUNTANT = "rdp"
# Spent epsilon may exceed the target by this much from the noise search's own tolerance, never more.
EPSILON_TOLERANCE = 1e-3


class DPUnavailable(RuntimeError):
    """The run asks for differential privacy but Opacus is not installed on this worker."""


class PrivacyBudgetExceeded(RuntimeError):
    """The run would spend (or has spent) more epsilon than its budget; the message gives the figures."""


def opacus_available() -> bool:
    """True when Opacus can be imported here (a private run can train)."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class DPSetup:
    """A model and optimizer made private, with what the loop needs to draw batches and account."""

    module: nn.Module  # the GradSampleModule wrapping the CVAE: forward through it
    optimizer: torch.optim.Optimizer  # the DPOptimizer wrapping the run's optimizer
    privacy: PrivacyConfig
    sample_rate: float
    noise_multiplier: float
    steps_per_epoch: int
    accountant: Any  # opacus.accountants.RDPAccountant

    def poisson_batch(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """Indices of one Poisson-sampled batch: each of the n images joins with probability sample_rate."""
        return torch.nonzero(torch.rand(n, generator=rng) < self.sample_rate).flatten()

    def record_step(self) -> None:
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def restore(self, epochs_done: int) -> None:
        """Set the accountant to the state after `epochs_done` full epochs (on a resume)."""
        steps = epochs_done * self.steps_per_epoch
        self.accountant.history = [(self.noise_multiplier, self.sample_rate, steps)] if steps else []

    def epsilon_spent(self) -> float:
        """The accountant's epsilon at the run's delta so far (0 before the first step)."""
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.privacy.delta))

    def check_budget(self, epoch: int) -> float:
        """Return epsilon spent; raise PrivacyBudgetExceeded if it is over the target."""
        spent = self.epsilon_spent()
        if spent > self.privacy.epsilon + EPSILON_TOLERANCE:
            raise PrivacyBudgetExceeded(
                f"privacy budget exceeded at epoch {epoch}: epsilon spent {spent:.4f} > target "
                f"{self.privacy.epsilon} (delta {self.privacy.delta})"
            )
        return spent


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    privacy: PrivacyConfig,
    *,
    n_train: int,
    batch_size: int,
    epochs: int,
    noise_generator: torch.Generator | None,
) -> DPSetup:
    """Wrap `model` and `optimizer` for DP-SGD spending `privacy.epsilon` over `epochs` epochs.

    Raises:
        DPUnavailable: Opacus is not installed.
        PrivacyBudgetExceeded: no noise multiplier reaches the target (epsilon too small for this many
            steps at this sampling rate), or the model has layers DP-SGD cannot train (BatchNorm).
    """
    try:
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator
    except ImportError as exc:
        raise DPUnavailable(
            "this job asks for differential privacy (hyperparameters.privacy) but Opacus is not installed on "
            "the worker; install the extra: pip install 'synthjobs[dp]'"
        ) from exc
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise PrivacyBudgetExceeded(f"model cannot be trained with DP-SGD: {errors[0]}")
    sample_rate = min(1.0, batch_size / n_train)
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    try:
        sigma = get_noise_multiplier(
            target_epsilon=privacy.epsilon,
            target_delta=privacy.delta,
            sample_rate=sample_rate,
            steps=steps_per_epoch * epochs,
            accountant=ACCOUNTANT,
        )
    except ValueError as exc:
        raise PrivacyBudgetExceeded(
            f"privacy budget too small: epsilon {privacy.epsilon} at delta {privacy.delta} cannot be met "
            f"with {steps_per_epoch * epochs} steps at sampling rate {sample_rate:.4f} ({exc})"
        ) from exc
    module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=privacy.max_grad_norm,
        expected_batch_size=batch_size,
        loss_reduction="mean",
        generator=noise_generator,
    )
    return DPSetup(
        module=module,
        optimizer=dp_optimizer,
        privacy=privacy,
        sample_rate=sample_rate,
        noise_multiplier=float(sigma),
        steps_per_epoch=steps_per_epoch,
        accountant=RDPAccountant(),
    )
