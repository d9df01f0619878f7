"""The one save/load module for model files, used by training, sampling, evaluation and resume alike.

A checkpoint is `torch.save` of a dict holding only primitives and tensors (the config as
`TrainConfig.to_dict()`), so it loads with `weights_only=True`: a file from storage is never trusted to run
code. Layout (FORMAT_VERSION 2; version 1 files, which predate the conv body, still load as MLPs):

    {"format_version": 2, "config": {...}, "architecture": "mlp" | "conv", "model_state": {...},
     "class_names": [...], "image_shape": [C, H, W], "metrics": {...},
     "classifier_architecture": "mlp" | "cnn" | None, "classifier_state": {...} | None,
     "train_state": {"epoch", "model_state", "optimizer_state", "rng_state", "history"} | None}

`architecture` is the body actually built (never "auto"), so a model is rebuilt as trained. A resume file
from `save_train_state` has the same layout, with the state's weights as `model_state` (torch.save writes
shared tensors once) and empty metrics; `load_checkpoint` reads it as the model at that epoch.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch
from torch import nn

from training.classifier import build_classifier
from training.config import TrainConfig
from training.model import CVAE, build_model, resolve_architecture
from training.train import EpochMetrics, TrainState

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_REQUIRED_KEYS = ("format_version", "config", "model_state", "class_names", "image_shape")
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint could not be read: corrupt, incomplete, unsafe or from an incompatible version."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint rebuilt into objects; `model` (and `classifier`, if saved) are in eval mode."""

    model: CVAE
    cfg: TrainConfig
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    metrics: dict
    classifier: nn.Module | None
    train_state: TrainState | None


def save_checkpoint(
    model: CVAE,
    cfg: TrainConfig,
    *,
    class_names: tuple[str, ...] | list[str],
    image_shape: tuple[int, int, int],
    metrics: dict | None = None,
    classifier: nn.Module | None = None,
    train_state: TrainState | None = None,
) -> bytes:
    """Serialise a model and what is needed to rebuild and use it.

    Args:
        model: the trained CVAE.
        cfg: its config, stored as a dict so loading needs no pickled classes.
        class_names: names of the classes, index order.
        image_shape: (C, H, W).
        metrics: JSON-like primitives (str, int, float, bool, None, lists and dicts of them).
        classifier: an evaluation classifier from `training.evaluate`, stored as its state_dict and
            architecture.
        train_state: include to let training resume from this file.

    Returns:
        The checkpoint bytes.

    Raises:
        ValueError: if `metrics` holds anything but primitives (it would not load with weights_only).
    """
    metrics = dict(metrics or {})
    _check_primitives(metrics, "metrics")
    payload = _payload(
        cfg,
        architecture=getattr(model, "architecture", "mlp"),
        model_state=_cpu_state(model),
        class_names=class_names,
        image_shape=image_shape,
        metrics=metrics,
        train_state=train_state,
    )
    if classifier is not None:
        payload["classifier_architecture"] = getattr(classifier, "architecture", "mlp")
        payload["classifier_state"] = _cpu_state(classifier)
    return _serialise(payload)


def save_train_state(
    state: TrainState,
    cfg: TrainConfig,
    *,
    image_shape: tuple[int, int, int],
    class_names: tuple[str, ...] | list[str],
) -> bytes:
    """Serialise a TrainState (from `train`'s `on_checkpoint`) so a later `train` can resume from it.

    Args:
        state: the state after `state.epoch` completed epochs.
        cfg: the config of the run (resume with the same one).
        image_shape: (C, H, W) of the dataset trained on.
        class_names: its class names, index order.

    Returns:
        Checkpoint bytes; `load_train_state` reads them back (and `load_checkpoint` reads them as the model
        at that epoch).
    """
    payload = _payload(
        cfg,
        architecture=resolve_architecture(cfg.architecture, tuple(image_shape)),
        model_state=state.model_state,
        class_names=class_names,
        image_shape=image_shape,
        metrics={},
        train_state=state,
    )
    return _serialise(payload)


def load_checkpoint(data: bytes, *, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild a checkpoint written by `save_checkpoint` or `save_train_state`, with `weights_only=True`.

    Raises:
        CheckpointError: on any failure (corrupt bytes, a pickle that weights_only refuses, missing keys,
            an invalid config, weights that do not fit the model).
    """
    payload = _read(data, device)
    return _guard(lambda: _rebuild(payload, device))


def load_train_state(data: bytes) -> tuple[TrainState, TrainConfig]:
    """Read the TrainState and config from `save_train_state` (or `save_checkpoint(train_state=...)`) bytes.

    The state is checked against the model and optimizer it will be loaded into, so a bad file fails here
    rather than inside `train`. Tensors are on CPU.

    Returns:
        (state, cfg): pass them as `train(cfg, data, resume_from=state)`.

    Raises:
        CheckpointError: on anything `load_checkpoint` rejects, a file without training state, or a state
            that does not fit the model (weights, optimizer, RNG state or history).
    """
    payload = _read(data, "cpu")
    return _guard(lambda: _rebuild_train_state(payload))


def _payload(
    cfg: TrainConfig,
    *,
    architecture: str,
    model_state: dict[str, torch.Tensor],
    class_names: tuple[str, ...] | list[str],
    image_shape: tuple[int, int, int],
    metrics: dict,
    train_state: TrainState | None,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "architecture": architecture,
        "model_state": model_state,
        "class_names": [str(n) for n in class_names],
        "image_shape": [int(v) for v in image_shape],
        "metrics": metrics,
        "classifier_architecture": None,
        "classifier_state": None,
        "train_state": _train_state_to_dict(train_state) if train_state is not None else None,
    }


def _serialise(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _read(data: bytes, device: str | torch.device) -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location=device)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise CheckpointError(f"could not read checkpoint: {type(exc).__name__}: {_first_line(exc)}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"invalid checkpoint: expected a dict, got {type(payload).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"invalid checkpoint: missing keys {', '.join(missing)}")
    if payload["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(f"unsupported checkpoint format_version {payload['format_version']!r}")
    return payload


def _guard(rebuild: Callable[[], T]) -> T:
    try:
        return rebuild()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"invalid checkpoint: {type(exc).__name__}: {_first_line(exc)}") from exc


def _rebuild_model(
    payload: dict[str, Any],
) -> tuple[CVAE, TrainConfig, tuple[str, ...], tuple[int, int, int]]:
    cfg = TrainConfig.from_dict(payload["config"])
    class_names = tuple(str(n) for n in payload["class_names"])
    c, h, w = (int(v) for v in payload["image_shape"])
    image_shape = (c, h, w)
    architecture = payload.get("architecture", "mlp")  # version 1 knew only the MLP
    model = build_model(cfg, c * h * w, len(class_names), image_shape=image_shape, architecture=architecture)
    model.load_state_dict(payload["model_state"])
    return model, cfg, class_names, image_shape


def _rebuild(payload: dict[str, Any], device: str | torch.device) -> LoadedCheckpoint:
    model, cfg, class_names, image_shape = _rebuild_model(payload)
    classifier = None
    if payload.get("classifier_state") is not None:
        classifier = build_classifier(
            image_shape, len(class_names), architecture=payload.get("classifier_architecture") or "mlp"
        )
        classifier.load_state_dict(payload["classifier_state"])
        classifier = classifier.to(device).eval()
    train_state = payload.get("train_state")
    return LoadedCheckpoint(
        model=model.to(device).eval(),
        cfg=cfg,
        class_names=class_names,
        image_shape=image_shape,
        metrics=dict(payload.get("metrics") or {}),
        classifier=classifier,
        train_state=_train_state_from_dict(train_state) if train_state is not None else None,
    )


def _rebuild_train_state(payload: dict[str, Any]) -> tuple[TrainState, TrainConfig]:
    if payload.get("train_state") is None:
        raise CheckpointError("checkpoint holds no training state to resume from")
    model, cfg, _, _ = _rebuild_model(payload)
    state = _train_state_from_dict(payload["train_state"])
    model.load_state_dict(state.model_state)
    torch.optim.Adam(model.parameters(), lr=cfg.learning_rate).load_state_dict(state.optimizer_state)
    torch.Generator().set_state(state.rng_state)
    if not isinstance(state.epoch, int) or not 0 <= state.epoch <= cfg.epochs:
        raise CheckpointError(f"invalid checkpoint: epoch {state.epoch!r} outside 0..{cfg.epochs}")
    if len(state.history) != state.epoch:
        raise CheckpointError(
            f"invalid checkpoint: {len(state.history)} history entries for epoch {state.epoch}"
        )
    for entry in state.history:
        EpochMetrics(**entry)  # raises TypeError on missing or unknown fields
    return state, cfg


def _train_state_to_dict(state: TrainState) -> dict[str, Any]:
    return {f.name: getattr(state, f.name) for f in fields(TrainState)}


def _train_state_from_dict(d: dict[str, Any]) -> TrainState:
    # Generator.set_state wants a CPU byte tensor whatever map_location moved it to.
    return TrainState(**{**d, "rng_state": d["rng_state"].cpu()})


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _check_primitives(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_primitives(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path} keys must be strings, got {k!r}")
            _check_primitives(v, f"{path}[{k!r}]")
        return
    raise ValueError(f"{path} must hold only primitives, got {type(value).__name__}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
