"""A small classifier trained on real images, used to score whether samples show the class asked for.

Conditional accuracy (the share of generated images that the classifier assigns to the label they were
generated for) is the figure we track for a CVAE: a model can have a good ELBO and still ignore its label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.data import ImageDataset

CLASSIFIER_HIDDEN = 256
CLASSIFIER_EPOCHS = 40
CLASSIFIER_BATCH = 64
CLASSIFIER_LR = 1e-3


def build_classifier(input_dim: int, num_classes: int) -> nn.Module:
    """Return an untrained MLP classifier on flattened pixels; rebuilds a saved state_dict."""
    return nn.Sequential(
        nn.Linear(input_dim, CLASSIFIER_HIDDEN),
        nn.ReLU(),
        nn.Linear(CLASSIFIER_HIDDEN, num_classes),
    )


def train_classifier(data: ImageDataset, *, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """Train the evaluation classifier on the real training split; deterministic for a seed.

    Weights are initialised inside a forked RNG so the global RNG is neither read nor advanced.

    Args:
        data: the dataset; only its training split is used.
        seed: seeds both the initial weights and the shuffling.
        device: where to train.

    Returns:
        The classifier in eval mode, on `device`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(data.input_dim, data.num_classes)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=CLASSIFIER_LR)
    shuffle = torch.Generator().manual_seed(seed)
    x, y = data.train_x.to(device), data.train_y.to(device)
    model.train()
    for _ in range(CLASSIFIER_EPOCHS):
        perm = torch.randperm(len(x), generator=shuffle).to(device)
        for start in range(0, len(x), CLASSIFIER_BATCH):
            idx = perm[start : start + CLASSIFIER_BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Return predicted labels (N,) for flattened images x (N, D) in [0, 1], on x's device."""
    device = next(classifier.parameters()).device
    preds = [classifier(x[i : i + batch_size].to(device)).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(preds).to(x.device) if preds else torch.empty(0, dtype=torch.int64)


def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the fraction of images x (N, D) that the classifier labels as y (N,)."""
    return float((predict(classifier, x) == y.to(x.device)).float().mean())


def conditional_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Score generated images against the labels they were generated for.

    Args:
        classifier: an evaluation classifier (see `train_classifier`).
        images: float (N, D) pixel values in [0, 1]; uint8 images are accepted and scaled by 1/255.
        labels: int64 (N,) the requested classes.

    Returns:
        {"overall": float, "per_class": {str(class_index): float}}; only classes present in `labels`
        appear in "per_class" (an absent class has no accuracy, and NaN is not JSON).
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    images = images.reshape(len(images), -1).float()
    labels = labels.to(images.device)
    correct = predict(classifier, images) == labels
    per_class = {
        str(int(c)): float(correct[labels == c].float().mean()) for c in torch.unique(labels).tolist()
    }
    return {"overall": float(correct.float().mean()) if len(correct) else 0.0, "per_class": per_class}
