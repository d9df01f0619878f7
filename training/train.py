"""The CVAE training loop: progress, metrics, checkpoints and cancellation flow through callbacks.

The loop knows nothing about its caller (minGPT's trainer): the worker passes callbacks that record
progress, upload checkpoints and poll for cancellation.

Determinism: initial weights come from `torch.manual_seed(cfg.seed)` inside a forked RNG, and every random
draw during training (the shuffling permutation and the reparameterization noise) comes from one CPU
`torch.Generator` seeded from `cfg.seed`. Its state at an epoch boundary, with the model and optimizer
states, is therefore all that a resumed run needs to continue bit-for-bit (the KL weight depends on the
epoch number only).

On CUDA the training split is copied to the device once when it takes under half the free device memory;
otherwise each batch is gathered on the host and copied through pinned memory with `non_blocking=True`.
`cfg.amp` runs the forward pass under bf16 autocast on CUDA (the loss is summed in float32; no gradient
scaler is needed for bf16); it is ignored on CPU, and held-out evaluation is always float32.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.data import ImageDataset
from training.dp import DPSetup, make_private
from training.model import CVAE, build_model, elbo_loss

logger = logging.getLogger(__name__)

# Share of free device memory the training split may take before batches are streamed from the host.
DEVICE_DATA_SHARE = 0.5
# Seed of the fixed noise used to estimate the held-out ELBO, so the figure is comparable between epochs.
HELDOUT_NOISE_SEED = 1234
EVAL_BATCH = 1024
# An epoch at least this long always gets its TrainState snapshot (see `train`'s checkpoint_wanted): a
# stop is then never made to wait for the rest of such an epoch, and its snapshot is cheap next to it.
FINISH_EPOCH_SECONDS = 0.5


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite; retrying with the same config will fail the same way."""


@dataclass
class EpochMetrics:
    """Metrics after one epoch.

    `heldout_neg_elbo` is the beta=1 negative ELBO (nats per image) on the validation split (what choices
    read; see `training.datasets.base`), in eval mode,
    estimated with one z sample per image drawn from a generator seeded with HELDOUT_NOISE_SEED: an
    unbiased single-sample estimate (unlike z = mu) that is still identical for identical weights. It is
    measured every `cfg.eval_every` epochs and after the last one (None in between); it draws from its own
    generator, so skipping it changes nothing else.
    """

    epoch: int  # 1-based
    epochs: int
    train_loss: float  # mean of the per-batch training losses (weighted by the epoch's KL weight), nats/image
    heldout_neg_elbo: float | None  # None: an epoch that `cfg.eval_every` did not evaluate
    seconds: float
    epsilon: float | None = None  # DP runs: the accountant's epsilon spent after this epoch (at cfg's delta)


@dataclass
class TrainState:
    """Everything needed to resume training after `epoch` completed epochs (tensors on CPU)."""

    epoch: int
    model_state: dict
    optimizer_state: dict
    rng_state: torch.Tensor  # state of the CPU generator used for shuffling and reparameterization noise
    history: list[dict]  # EpochMetrics as dicts


@dataclass
class TrainResult:
    """The trained model and its metrics; `stopped` is True if `should_stop` ended training early."""

    model: CVAE
    history: list[EpochMetrics]
    final: EpochMetrics
    stopped: bool


def train(
    cfg: TrainConfig,
    data: ImageDataset,
    *,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    resume_from: TrainState | None = None,
    checkpoint_wanted: Callable[[int], bool] | None = None,
) -> TrainResult:
    """Train a CVAE on `data.train_x` with Adam, deterministically for `cfg.seed`.

    Args:
        cfg: hyperparameters.
        data: the dataset; only `heldout_neg_elbo` reads its validation split, and nothing its test split.
        device: where to train.
        on_epoch: called with each epoch's metrics.
        on_batch: called after each batch with (step, total_steps), step 1-based over the whole run
            (including epochs done before a resume).
        should_stop: polled before each batch; when it returns True, training stops at once (or at the end
            of a short epoch, see `checkpoint_wanted`) and the result has `stopped=True`. No checkpoint of a
            part-done epoch is ever offered (every one is at an epoch boundary).
        on_checkpoint: called with a TrainState every `cfg.checkpoint_every` epochs and after the last one.
        checkpoint_wanted: asked with the epoch number before that TrainState is built (a deep CPU copy of
            the model and the optimizer); False skips it. A stop that then lands in the next epoch runs
            that epoch to its end and offers its state, so `on_checkpoint` still sees the last completed
            epoch before a stop, unless the skipped epoch took `FINISH_EPOCH_SECONDS` or longer: such
            epochs are never skipped (their snapshot is cheap next to them, and a stop must not wait).
        resume_from: continue from this state; the final weights equal those of an uninterrupted run.

    Returns:
        A TrainResult. When stopped, `final` describes the model at the stop: `epoch` is the interrupted
        epoch, `train_loss` covers the batches done in it (NaN if none), and it is not in `history`; or,
        when the stop ran a short epoch to its end (see `checkpoint_wanted`), that epoch, in `history`.

    With `cfg.privacy` the run is DP-SGD (see `training.dp`): batches are Poisson-sampled, per-sample
    gradients clipped and noised, and each epoch's metrics carry the accountant's epsilon spent.

    Raises:
        TrainingDiverged: if a batch loss is NaN or infinite.
        training.dp.DPUnavailable: privacy is asked for and Opacus is not installed.
        training.dp.PrivacyBudgetExceeded: the budget cannot be met, or was overspent at an epoch's end.
    """
    device = torch.device(device)
    model, optimizer, rng, history = _setup(cfg, data, device, resume_from)
    dp = _make_private(cfg, model, optimizer, len(data.train_y), device, rng, epochs_done=len(history))
    forward, step_optimizer = (dp.module, dp.optimizer) if dp is not None else (model, optimizer)
    split = _TrainSplit(data.train_x, data.train_y, device)
    batches = math.ceil(len(data.train_y) / cfg.batch_size)
    total_steps = batches * cfg.epochs
    deferred = False  # the last completed epoch's snapshot was skipped (checkpoint_wanted said no)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        perm = split.permutation(rng) if dp is None else None
        losses: list[float] = []
        finishing = False  # a stop came after a skipped snapshot: end this short epoch, offer its state
        for b in range(batches):
            if not finishing and should_stop is not None and should_stop():
                if not deferred:
                    final = _measure(model, cfg, data, device, epoch, _mean(losses), started, final=True)
                    logger.info("training stopped during epoch %d after %d batches", epoch, b)
                    return TrainResult(model=_finish(model, dp), history=history, final=final, stopped=True)
                finishing = True
                logger.info("stop during epoch %d: finishing it to checkpoint a completed epoch", epoch)
            if dp is None:
                assert perm is not None
                x, y = split.batch(perm[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            else:
                x, y = split.batch(split.on_device(dp.poisson_batch(len(data.train_y), rng)))
                dp.record_step()
            if len(y):  # a Poisson batch may be empty: nothing is released, the step is still accounted
                losses.append(_step(forward, step_optimizer, cfg, x, y, rng, epoch, b))
            if on_batch is not None:
                on_batch((epoch - 1) * batches + b + 1, total_steps)
        metrics = _measure(model, cfg, data, device, epoch, _mean(losses), started, final=finishing)
        if dp is not None:
            metrics.epsilon = dp.check_budget(epoch)
        history.append(metrics)
        logger.info("epoch %d/%d: %s", epoch, cfg.epochs, metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        due = epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs
        if on_checkpoint is not None and (due or finishing):
            wanted = (
                finishing
                or checkpoint_wanted is None
                or metrics.seconds >= FINISH_EPOCH_SECONDS
                or checkpoint_wanted(epoch)
            )
            if wanted:
                on_checkpoint(_snapshot(epoch, model, optimizer, rng, history))
            deferred = not wanted
        if finishing:
            logger.info("training stopped at the end of epoch %d", epoch)
            return TrainResult(model=_finish(model, dp), history=history, final=metrics, stopped=True)
    return TrainResult(model=_finish(model, dp), history=history, final=history[-1], stopped=False)


def _make_private(
    cfg: TrainConfig,
    model: CVAE,
    optimizer: torch.optim.Optimizer,
    n_train: int,
    device: torch.device,
    rng: torch.Generator,
    *,
    epochs_done: int,
) -> DPSetup | None:
    """DP-SGD wrappers for a private run (None otherwise), with the accountant at `epochs_done` epochs.

    On CPU the DP noise comes from the run's generator, so a private run is deterministic and resumes
    bit-for-bit; on CUDA it comes from a device generator seeded from cfg.seed (deterministic from scratch).
    """
    if cfg.privacy is None:
        return None
    noise = rng if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    dp = make_private(
        model,
        optimizer,
        cfg.privacy,
        n_train=n_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        noise_generator=noise,
    )
    dp.restore(epochs_done)
    logger.info(
        "DP-SGD: noise multiplier %.4f, sampling rate %.4f, target epsilon %s at delta %s",
        dp.noise_multiplier,
        dp.sample_rate,
        cfg.privacy.epsilon,
        cfg.privacy.delta,
    )
    return dp


def _finish(model: CVAE, dp: DPSetup | None) -> CVAE:
    """The trained model in eval mode, with Opacus's per-sample-gradient hooks removed."""
    if dp is not None:
        dp.module.remove_hooks()  # type: ignore[operator]
    return model.eval()


def kl_weight(cfg: TrainConfig, epoch: int) -> float:
    """Return the KL weight used throughout epoch `epoch` (1-based): the warm-up schedule.

    With W = cfg.kl_warmup_epochs > 0 it is beta * min(1, (epoch - 1) / W): epoch 1 trains with 0 (pure
    reconstruction), each later epoch adds beta / W, and epoch W + 1 onwards trains with the full beta.
    With W = 0 every epoch uses beta. It is constant within an epoch, so a resumed run uses the same weights.
    """
    if cfg.kl_warmup_epochs == 0:
        return cfg.beta
    return cfg.beta * min(1.0, (epoch - 1) / cfg.kl_warmup_epochs)


class _TrainSplit:
    """The training split, cut into batches on the training device.

    On CUDA it is copied to the device once if it takes under DEVICE_DATA_SHARE of the free memory;
    otherwise each batch is gathered on the host, pinned and copied with non_blocking=True (the caching
    host allocator keeps the pinned block alive until the copy is done).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.device = device
        self.resident = device.type != "cuda" or _fits_on(device, x.nbytes + y.nbytes)
        self.x, self.y = (x.to(device), y.to(device)) if self.resident else (x, y)
        if not self.resident:
            logger.info("training split (%d bytes) streams from pinned host memory", x.nbytes + y.nbytes)

    def permutation(self, rng: torch.Generator) -> torch.Tensor:
        perm = torch.randperm(len(self.y), generator=rng)  # on CPU: the same order on every device
        return perm.to(self.device) if self.resident else perm

    def on_device(self, idx: torch.Tensor) -> torch.Tensor:
        """CPU indices, moved to where `batch` expects them."""
        return idx.to(self.device) if self.resident else idx

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            return self.x[idx], self.y[idx]
        return (
            self.x[idx].pin_memory().to(self.device, non_blocking=True),
            self.y[idx].pin_memory().to(self.device, non_blocking=True),
        )


def _fits_on(device: torch.device, nbytes: int) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < DEVICE_DATA_SHARE * free


def _setup(
    cfg: TrainConfig, data: ImageDataset, device: torch.device, resume_from: TrainState | None
) -> tuple[CVAE, torch.optim.Optimizer, torch.Generator, list[EpochMetrics]]:
    # Build on CPU under a forked RNG: the weights depend on cfg.seed only, not on global state or device.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.input_dim, data.num_classes, image_shape=data.image_shape)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    rng = torch.Generator().manual_seed(cfg.seed)
    history: list[EpochMetrics] = []
    if resume_from is not None:
        if not 0 <= resume_from.epoch <= cfg.epochs or len(resume_from.history) != resume_from.epoch:
            raise ValueError(
                f"cannot resume from epoch {resume_from.epoch} with {len(resume_from.history)} history "
                f"entries for a {cfg.epochs}-epoch run"
            )
        model.load_state_dict(resume_from.model_state)
        optimizer.load_state_dict(resume_from.optimizer_state)
        rng.set_state(resume_from.rng_state)
        history = [EpochMetrics(**h) for h in resume_from.history]
    return model, optimizer, rng, history


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    rng: torch.Generator,
    epoch: int,
    batch: int,
) -> float:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.amp and x.device.type == "cuda"):
        logits, mu, log_var = model(x, y, generator=rng)
    loss, _, _ = elbo_loss(logits, x, mu, log_var, beta=kl_weight(cfg, epoch))
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training loss became {value} at epoch {epoch}, batch {batch + 1}; "
            f"try a lower learning_rate (now {cfg.learning_rate}) or check the data for NaN/inf"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


@torch.no_grad()
def heldout_neg_elbo(
    model: CVAE, data: ImageDataset, device: torch.device | str = "cpu", *, split: str = "validation"
) -> float:
    """Return the beta=1 negative ELBO in nats per image on a held-out split (see EpochMetrics).

    `split` is "validation" (what training and the promotion gate read; test when validation is empty, see
    `ImageDataset.choice_split`) or "test" (the figure a model reports).
    """
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    images, labels = data.choice_split() if split == "validation" else (data.test_x, data.test_y)
    was_training = model.training
    model.eval()
    noise = torch.Generator().manual_seed(HELDOUT_NOISE_SEED)
    total = 0.0
    for start in range(0, len(images), EVAL_BATCH):
        x = images[start : start + EVAL_BATCH].to(device)
        y = labels[start : start + EVAL_BATCH].to(device)
        logits, mu, log_var = model(x, y, generator=noise)
        loss, _, _ = elbo_loss(logits, x, mu, log_var, beta=1.0)
        total += loss.item() * len(x)
    model.train(was_training)
    return total / len(images)


def _measure(
    model: CVAE,
    cfg: TrainConfig,
    data: ImageDataset,
    device: torch.device,
    epoch: int,
    loss: float,
    t0: float,
    *,
    final: bool = False,
) -> EpochMetrics:
    """The epoch's metrics; the held-out -ELBO every `cfg.eval_every` epochs, at the last and at a stop."""
    evaluate = final or epoch % cfg.eval_every == 0 or epoch == cfg.epochs
    return EpochMetrics(
        epoch=epoch,
        epochs=cfg.epochs,
        train_loss=loss,
        heldout_neg_elbo=heldout_neg_elbo(model, data, device) if evaluate else None,
        seconds=time.perf_counter() - t0,
    )


def _snapshot(
    epoch: int,
    model: CVAE,
    optimizer: torch.optim.Optimizer,
    rng: torch.Generator,
    history: list[EpochMetrics],
) -> TrainState:
    # Deep copies on CPU: the caller may keep or serialise the state while training goes on.
    return TrainState(
        epoch=epoch,
        model_state=_to_cpu(model.state_dict()),
        optimizer_state=_to_cpu(optimizer.state_dict()),
        rng_state=rng.get_state().clone(),
        history=[dataclasses.asdict(m) for m in history],
    )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return copy.deepcopy(obj)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
