"""Plain-PyTorch training and sampling of class-conditional VAEs (CVAEs).

This package knows nothing about queues, databases or object storage: callers hand it a `TrainConfig` and
an `ImageDataset`, and get back models, metrics, checkpoint bytes and uint8 images. It imports only torch,
torchvision, numpy and the stdlib (scikit-learn lazily, to read its bundled digits), so the worker can use
it and the API never has to.
"""

from training.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import ImageDataset, load_dataset, load_digits_dataset
from training.model import CVAE, build_model, elbo_loss
from training.sample import generate, grid_png, shard_generator
from training.train import EpochMetrics, TrainingDiverged, TrainResult, TrainState, train

__all__ = [
    "CVAE",
    "CheckpointError",
    "EpochMetrics",
    "ImageDataset",
    "LoadedCheckpoint",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "build_model",
    "elbo_loss",
    "generate",
    "grid_png",
    "load_checkpoint",
    "load_dataset",
    "load_digits_dataset",
    "save_checkpoint",
    "shard_generator",
    "train",
]
