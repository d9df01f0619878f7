"""The one save/load pair for model files, used by training, sampling and evaluation alike.

A checkpoint is `torch.save` of a dict holding only primitives and tensors (the config as
`TrainConfig.to_dict()`), so it loads with `weights_only=True`: a file from storage is never trusted to run
code. Layout (FORMAT_VERSION 1):

    {"format_version": 1, "config": {...}, "model_state": {...}, "class_names": [...],
     "image_shape": [C, H, W], "metrics": {...}, "classifier_state": {...} | None,
     "train_state": {"epoch", "model_state", "optimizer_state", "rng_state", "history"} | None}
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.evaluate import build_classifier
from training.model import CVAE, build_model
from training.train import TrainState

FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "config", "model_state", "class_names", "image_shape")


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
        classifier: an evaluation classifier from `training.evaluate`, stored as its state_dict.
        train_state: include to let training resume from this file.

    Returns:
        The checkpoint bytes.

    Raises:
        ValueError: if `metrics` holds anything but primitives (it would not load with weights_only).
    """
    metrics = dict(metrics or {})
    _check_primitives(metrics, "metrics")
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "model_state": _cpu_state(model),
        "class_names": [str(n) for n in class_names],
        "image_shape": [int(v) for v in image_shape],
        "metrics": metrics,
        "classifier_state": _cpu_state(classifier) if classifier is not None else None,
        "train_state": _train_state_to_dict(train_state) if train_state is not None else None,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_checkpoint(data: bytes, *, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild a checkpoint written by `save_checkpoint`, with `weights_only=True`.

    Raises:
        CheckpointError: on any failure (corrupt bytes, a pickle that weights_only refuses, missing keys,
            an invalid config, weights that do not fit the model).
    """
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location=device)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise CheckpointError(f"could not read checkpoint: {type(exc).__name__}: {_first_line(exc)}") from exc
    try:
        return _rebuild(payload, device)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"invalid checkpoint: {type(exc).__name__}: {_first_line(exc)}") from exc


def _rebuild(payload: Any, device: str | torch.device) -> LoadedCheckpoint:
    if not isinstance(payload, dict):
        raise CheckpointError(f"invalid checkpoint: expected a dict, got {type(payload).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"invalid checkpoint: missing keys {', '.join(missing)}")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"unsupported checkpoint format_version {payload['format_version']!r}")
    cfg = TrainConfig.from_dict(payload["config"])
    class_names = tuple(str(n) for n in payload["class_names"])
    c, h, w = (int(v) for v in payload["image_shape"])
    image_shape = (c, h, w)
    model = build_model(cfg, c * h * w, len(class_names), image_shape=image_shape)
    model.load_state_dict(payload["model_state"])
    classifier = None
    if payload.get("classifier_state") is not None:
        classifier = build_classifier(c * h * w, len(class_names))
        classifier.load_state_dict(payload["classifier_state"])
        classifier = classifier.to(device).eval()
    train_state = payload.get("train_state")
    if train_state is not None:
        # Generator.set_state wants a CPU byte tensor whatever map_location moved it to.
        train_state = {**train_state, "rng_state": train_state["rng_state"].cpu()}
    return LoadedCheckpoint(
        model=model.to(device).eval(),
        cfg=cfg,
        class_names=class_names,
        image_shape=image_shape,
        metrics=dict(payload.get("metrics") or {}),
        classifier=classifier,
        train_state=TrainState(**train_state) if train_state is not None else None,
    )


def _train_state_to_dict(state: TrainState) -> dict[str, Any]:
    return {
        "epoch": state.epoch,
        "model_state": state.model_state,
        "optimizer_state": state.optimizer_state,
        "rng_state": state.rng_state,
        "history": state.history,
    }


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
