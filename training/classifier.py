"""The evaluation classifier recipe: the one classifier every figure in `training.evaluate` trains.

One fixed recipe per image shape, so TSTR and TRTR differ only in the training images: an MLP on flat
pixels for small images (8x8 digits), a small CNN from 16x16 up (`classifier_architecture`); Adam, batch
64, a fixed number of epochs, weights and shuffling seeded by `seed`. Every classifier takes flat
(B, C*H*W) pixels in [0, 1], like the CVAE. The checkpoint stores one (the model's evaluation classifier)
and rebuilds it with `build_classifier`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.data import ImageDataset

CLASSIFIER_ARCHITECTURES = ("mlp", "cnn")
# Version of the recipe below (architectures, epochs, batch, lr, seeding): bump it with any change, so cached
# evaluation classifiers (`training.classifier_cache`) of the old recipe are retrained, never reused.
CLASSIFIER_RECIPE = 1
CLASSIFIER_HIDDEN = 256  # the MLP's hidden layer
CNN_CHANNELS = (32, 64)
CNN_HIDDEN = 128
CNN_MIN_SIZE = 16
# Epochs of the fixed recipe, per architecture: the CNN converges in far fewer passes than the MLP.
CLASSIFIER_EPOCHS = {"mlp": 40, "cnn": 10}
CLASSIFIER_BATCH = 64
CLASSIFIER_LR = 1e-3


def classifier_architecture(image_shape: tuple[int, int, int] | None) -> str:
    """Return "cnn" for images of at least 16x16, else "mlp" (also for an unknown shape)."""
    if image_shape is None:
        return "mlp"
    _, h, w = image_shape
    return "cnn" if min(h, w) >= CNN_MIN_SIZE else "mlp"


def build_classifier(
    image_shape: tuple[int, int, int] | int, num_classes: int, *, architecture: str | None = None
) -> nn.Module:
    """Return an untrained classifier on flat pixels; also rebuilds a saved state_dict.

    Args:
        image_shape: (C, H, W); a bare int is taken as the flat input size of an MLP (the old signature).
        num_classes: number of outputs (logits).
        architecture: "mlp" or "cnn"; default `classifier_architecture(image_shape)`.

    Returns:
        An nn.Sequential with `architecture` and `image_shape` attributes (the checkpoint stores both).
    """
    shape = None if isinstance(image_shape, int) else tuple(int(v) for v in image_shape)
    input_dim = image_shape if isinstance(image_shape, int) else int(np.prod(shape))
    architecture = architecture or classifier_architecture(shape)
    if architecture == "mlp":
        model = nn.Sequential(
            nn.Linear(input_dim, CLASSIFIER_HIDDEN), nn.ReLU(), nn.Linear(CLASSIFIER_HIDDEN, num_classes)
        )
    elif architecture == "cnn":
        if shape is None:
            raise ValueError("a cnn classifier needs the image shape (C, H, W)")
        model = _cnn(shape, num_classes)
    else:
        raise ValueError(f"classifier architecture must be one of mlp, cnn, got {architecture!r}")
    model.architecture = architecture
    model.image_shape = shape
    return model


def _cnn(shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    c, h, w = shape
    c1, c2 = CNN_CHANNELS
    return nn.Sequential(
        nn.Unflatten(1, (c, h, w)),  # (B, C, H, W)
        nn.Conv2d(c, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 64, H/4, W/4), floored
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), CNN_HIDDEN),
        nn.ReLU(),
        nn.Linear(CNN_HIDDEN, num_classes),
    )


def train_classifier(data: ImageDataset, *, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """Train the evaluation classifier on the real training split; deterministic for a seed.

    Args:
        data: the dataset; only its training split is used.
        seed: seeds both the initial weights and the shuffling.
        device: where to train.

    Returns:
        The classifier in eval mode, on `device`.
    """
    return fit_classifier(
        data.train_x, data.train_y, data.image_shape, data.num_classes, seed=seed, device=device
    )


def fit_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train the fixed classifier recipe on flat pixels x (N, D) in [0, 1] and labels y (N,).

    Weights are initialised inside a forked RNG so the global RNG is neither read nor advanced.

    Returns:
        The classifier in eval mode, on `device`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(image_shape, num_classes)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=CLASSIFIER_LR)
    shuffle = torch.Generator().manual_seed(seed)
    x, y = x.to(device), y.to(device)
    model.train()
    for _ in range(CLASSIFIER_EPOCHS[model.architecture]):
        perm = torch.randperm(len(x), generator=shuffle).to(device)
        for start in range(0, len(x), CLASSIFIER_BATCH):
            idx = perm[start : start + CLASSIFIER_BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def as_flat_pixels(
    images: np.ndarray | torch.Tensor, image_shape: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Return float32 (N, C*H*W) pixels in [0, 1] in (C, H, W) order.

    Accepts uint8 (scaled by 1/255) or float images: (N, D) already flat, (N, H, W) greyscale, or
    (N, H, W, C) channels-last as `generate` returns them.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 4:
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W)
    x = x.reshape(len(x), -1)
    if image_shape is not None and x.shape[1] != int(np.prod(image_shape)):
        raise ValueError(f"images of {x.shape[1]} values each do not match image shape {tuple(image_shape)}")
    return x


@torch.no_grad()
def predict(classifier: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Return predicted labels (N,) for flattened images x (N, D) in [0, 1], on x's device."""
    device = next(classifier.parameters()).device
    preds = [classifier(x[i : i + batch_size].to(device)).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(preds).to(x.device) if preds else torch.empty(0, dtype=torch.int64)


def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the fraction of images x (N, D) that the classifier labels as y (N,)."""
    return float((predict(classifier, x) == y.to(x.device)).float().mean())


@torch.no_grad()
def features(classifier: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Penultimate-layer activations (N, F) of flat pixels x (N, D): the space privacy and fidelity use.

    Every recipe architecture is an nn.Sequential ending in its logits layer; the layers before it are
    the feature extractor (`feature_extractor_name` names it next to each figure).
    """
    device = next(classifier.parameters()).device
    body = classifier[:-1]  # type: ignore[index]
    out = [body(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0)


def feature_extractor_name(classifier: nn.Module) -> str:
    """E.g. "evaluation-classifier:mlp:penultimate(256)"; models compare only under the same name."""
    width = classifier[-1].in_features  # type: ignore[index]
    return f"evaluation-classifier:{getattr(classifier, 'architecture', 'mlp')}:penultimate({width})"
