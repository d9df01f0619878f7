"""Plain-PyTorch training and sampling of class-conditional VAEs (CVAEs).

This package knows nothing about queues, databases or object storage: callers hand it a `TrainConfig` and
an `ImageDataset`, and get back models, metrics, checkpoint bytes and uint8 images. It imports only torch,
torchvision, numpy and the stdlib (scikit-learn lazily, to read its bundled digits), so the worker can use
it and the API never has to.
"""

from training.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from training.classifier import build_classifier, train_classifier
from training.config import TrainConfig
from training.data import (
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    decode_image_folder,
    fingerprint,
    load_dataset,
    load_digits_dataset,
    load_torchvision_dataset,
)
from training.evaluate import (
    Scores,
    Stream,
    conditional_accuracy,
    evaluation_classifier,
    sample_per_class,
    score_model,
    trtr,
    tstr,
)
from training.model import CVAE, build_model, elbo_loss
from training.plots import loss_curve_png
from training.sample import generate, grid_png, shard_generator
from training.train import EpochMetrics, TrainingDiverged, TrainResult, TrainState, kl_weight, train

__all__ = [
    "CVAE",
    "CheckpointError",
    "DatasetError",
    "EpochMetrics",
    "ImageDataset",
    "LoadedCheckpoint",
    "Scores",
    "Stream",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "build_classifier",
    "build_model",
    "conditional_accuracy",
    "dataset_from_arrays",
    "decode_image_folder",
    "elbo_loss",
    "evaluation_classifier",
    "fingerprint",
    "generate",
    "grid_png",
    "kl_weight",
    "load_checkpoint",
    "load_dataset",
    "load_digits_dataset",
    "load_torchvision_dataset",
    "load_train_state",
    "loss_curve_png",
    "sample_per_class",
    "save_checkpoint",
    "save_train_state",
    "score_model",
    "shard_generator",
    "train",
    "train_classifier",
    "trtr",
    "tstr",
]
