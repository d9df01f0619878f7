"""What a training job's CVAE costs, from its configuration alone: parameters and activation memory.

The API checks a request against this deployment's budget before queueing it, without torch (the API never
imports it), so the formulas here mirror `training/model.py` layer by layer; a test builds the real model
for several configurations and compares `parameter_count` with torch's own count, which keeps the two in
step. The worker checks again with the dataset it actually loaded (an image folder's shape is only known
there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synthjobs.errors import InvalidRequest

CONV_CHANNELS = (32, 64)  # training.model.CONV_CHANNELS
CONV_KERNEL = 4
CONV_MIN_SIZE = 16  # training.model.CONV_MIN_SIZE
FLOAT_BYTES = 4
# Per parameter while training with Adam in float32: the weight, its gradient and two moment estimates.
TRAINING_BYTES_PER_PARAMETER = 4 * FLOAT_BYTES
# Image shape (C, H, W) and class count of the datasets known without reading them.
KNOWN_DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "MNIST": ((1, 28, 28), 10),
    "FashionMNIST": ((1, 28, 28), 10),
    "CIFAR10": ((3, 32, 32), 10),
}
# An uploaded dataset's class count is not known before its labels are read: two is the least it can have,
# so the submit-time figure never overstates the cost (the worker checks the exact one).
MIN_CLASSES = 2


@dataclass(frozen=True)
class ModelCost:
    """The figures a budget is checked against."""

    architecture: str
    parameters: int
    activation_bytes_per_image: int
    batch_size: int

    @property
    def activation_bytes(self) -> int:
        """Estimated activation memory of one training batch."""
        return self.activation_bytes_per_image * self.batch_size


def resolve_architecture(architecture: str, image_shape: tuple[int, int, int]) -> str:
    """The body built, "mlp" or "conv", by the rule of `training.model.resolve_architecture`."""
    if architecture in ("mlp", "conv"):
        return architecture
    _, h, w = image_shape
    return "conv" if min(h, w) >= CONV_MIN_SIZE and h % 4 == 0 and w % 4 == 0 else "mlp"


def parameter_count(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    latent_dim: int,
    hidden_dim: int,
    conditioning: str = "concat",
    architecture: str = "auto",
) -> int:
    """The number of parameters `training.model.CVAE` has for this configuration (exactly)."""
    c, h, w = image_shape
    d, k, z, hid = c * h * w, num_classes, latent_dim, hidden_dim
    label_in = k if conditioning == "concat" else 0
    built = resolve_architecture(architecture, image_shape)
    if built == "conv":
        c1, c2 = CONV_CHANNELS
        kk = CONV_KERNEL * CONV_KERNEL
        features = c2 * (h // 4) * (w // 4)
        convs = (c * c1 * kk + c1) + (c1 * c2 * kk + c2)  # encoder's two stride-2 convs
        head = (hid * features + features) + (c2 * c1 * kk + c1) + (c1 * c * kk + c)  # linear + 2 transposed
    else:
        features, convs = d, 0
        head = hid * d + d  # Linear(hidden, D)
    encoder = (features + label_in) * hid + hid
    posterior = 2 * (hid * z + z)  # to_mu, to_log_var
    projector = k * z + z if conditioning == "additive" else 0
    decoder = (z + label_in) * hid + hid
    return convs + encoder + posterior + projector + decoder + head


def activation_bytes_per_image(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    latent_dim: int,
    hidden_dim: int,
    conditioning: str = "concat",
    architecture: str = "auto",
) -> int:
    """Estimated bytes of activations one training image keeps for the backward pass, and their gradients.

    An estimate, not a measurement: the float32 tensors the forward pass creates (input copy, hidden layers
    and their ReLUs, latents, logits and the per-pixel loss; for the conv body every feature map), doubled
    for the gradients the backward pass holds alongside them.
    """
    c, h, w = image_shape
    d = c * h * w
    label_in = num_classes if conditioning == "concat" else 0
    elements = 4 * d + 4 * hidden_dim + 6 * latent_dim + 2 * label_in
    if resolve_architecture(architecture, image_shape) == "conv":
        c1, c2 = CONV_CHANNELS
        quarter = (h // 2) * (w // 2)
        sixteenth = (h // 4) * (w // 4)
        # conv1 + ReLU, conv2 + ReLU, the flattened features joined to the label; decoder mirrored.
        elements += 2 * 2 * c1 * quarter + 2 * 2 * c2 * sixteenth + c2 * sixteenth
    return 2 * FLOAT_BYTES * elements


def model_cost(
    image_shape: tuple[int, int, int], num_classes: int, hyperparameters: Mapping[str, Any]
) -> ModelCost:
    """Parameters and activation memory of the CVAE a training job with these hyperparameters builds."""
    architecture = str(hyperparameters.get("architecture", "auto"))
    options: dict[str, Any] = {
        "latent_dim": int(hyperparameters.get("latent_dim", 16)),
        "hidden_dim": int(hyperparameters.get("hidden_dim", 256)),
        "conditioning": str(hyperparameters.get("conditioning", "concat")),
        "architecture": architecture,
    }
    return ModelCost(
        architecture=resolve_architecture(architecture, image_shape),
        parameters=parameter_count(image_shape, num_classes, **options),
        activation_bytes_per_image=activation_bytes_per_image(image_shape, num_classes, **options),
        batch_size=int(hyperparameters.get("batch_size", 32)),
    )


def check_model_budget(
    image_shape: tuple[int, int, int],
    num_classes: int,
    hyperparameters: Mapping[str, Any],
    *,
    max_parameters: int,
    max_activation_bytes: int,
) -> ModelCost:
    """The model's cost; InvalidRequest naming the figure and the limit when it is past either budget.

    Raises:
        InvalidRequest: on ("hyperparameters", "hidden_dim") for too many parameters, on
            ("hyperparameters", "batch_size") for too much activation memory per batch.
    """
    cost = model_cost(image_shape, num_classes, hyperparameters)
    c, h, w = image_shape
    images = f"{h}x{w}x{c} images"
    if cost.parameters > max_parameters:
        weights = human_bytes(cost.parameters * FLOAT_BYTES)
        message = (
            f"model would have {sci(cost.parameters)} parameters ({weights}"
            f" of weights, {cost.architecture} on {images}, hidden_dim {hyperparameters.get('hidden_dim')}); "
            f"this deployment's limit is {sci(max_parameters)}: lower hidden_dim or use smaller images"
        )
        raise InvalidRequest(("hyperparameters", "hidden_dim"), message, "limit")
    if cost.activation_bytes > max_activation_bytes:
        message = (
            f"training would need about {human_bytes(cost.activation_bytes)} of activations per batch "
            f"(batch_size {cost.batch_size} x {human_bytes(cost.activation_bytes_per_image)} per image, "
            f"{cost.architecture} on {images}); this deployment's limit is "
            f"{human_bytes(max_activation_bytes)}: lower batch_size or hidden_dim"
        )
        raise InvalidRequest(("hyperparameters", "batch_size"), message, "limit")
    return cost


def sci(n: int) -> str:
    """A count in short scientific notation: 8.6e9, 2e8; small counts as they are."""
    if n < 100_000:
        return str(n)
    mantissa, exponent = f"{n:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def human_bytes(n: int) -> str:
    """Bytes in decimal units with three significant figures: 34.4 GB, 512 kB, 90 B."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
