"""Class-conditional VAE (CVAE) on flattened images, with an MLP or a convolutional body, and its loss.

Two ways for the label to reach the model, chosen by `TrainConfig.conditioning`, with the same meaning for
both architectures:

- "concat" (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep Conditional
  Generative Models"): the one-hot label is concatenated to the encoder's input to its hidden layer and to
  z before decoding. For the MLP that input is the flat image itself; for the conv body it is the
  flattened conv features (joining the label after the convs, not as K constant input channels, keeps the
  convs label-free and costs K inputs of one linear layer instead of K channels at full resolution).
- "additive" (the course design, kept faithful): the encoder sees only x; the label goes through
  `label_projector` (Linear + ReLU into latent space) and is added to z before decoding.

Both architectures take and return flat (B, C*H*W) tensors, so the loss, the training loop and the sampler
do not depend on the architecture. The conv body (for H, W divisible by 4) is two stride-2 convs (32 and
64 channels) -> flatten -> hidden layer -> mu / log_var, mirrored by the decoder with two transposed convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import CONDITIONINGS, TrainConfig

BUILT_ARCHITECTURES = ("mlp", "conv")
CONV_CHANNELS = (32, 64)
# "auto" picks the conv body from this size up; below it an 8x8 image is better served by the MLP.
CONV_MIN_SIZE = 16


def resolve_architecture(architecture: str, image_shape: tuple[int, int, int] | None) -> str:
    """Turn a config's architecture ("auto", "mlp", "conv") into the one built: "mlp" or "conv".

    "auto" means conv when H and W are both >= 16 and divisible by 4 (28x28 MNIST, 32x32 CIFAR), else mlp.
    """
    if architecture in BUILT_ARCHITECTURES:
        return architecture
    if architecture != "auto":
        raise ValueError(
            f"architecture must be one of auto, {', '.join(BUILT_ARCHITECTURES)}, got {architecture!r}"
        )
    if image_shape is None:
        return "mlp"
    _, h, w = image_shape
    return "conv" if min(h, w) >= CONV_MIN_SIZE and h % 4 == 0 and w % 4 == 0 else "mlp"


class CVAE(nn.Module):
    """CVAE whose decoder outputs Bernoulli logits per pixel; inputs and outputs are flat (B, C*H*W).

    `image_shape` (C, H, W) lets samplers turn flat outputs back into images; the MLP does not need it (and
    it may be None for an MLP built without a dataset at hand), the conv body does.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        latent_dim: int = 8,
        hidden_dim: int = 256,
        conditioning: str = "concat",
        *,
        image_shape: tuple[int, int, int] | None = None,
        architecture: str = "mlp",
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
        if architecture not in BUILT_ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(BUILT_ARCHITECTURES)}, got {architecture!r}"
            )
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.conditioning = conditioning
        self.architecture = architecture
        self.image_shape = image_shape
        label_in = num_classes if conditioning == "concat" else 0
        if architecture == "conv":
            c, h, w = _conv_shape(image_shape, input_dim)
            self.features: nn.Module = _conv_encoder(c, h, w)
            feature_dim = CONV_CHANNELS[1] * (h // 4) * (w // 4)
            output: nn.Module = _conv_decoder_head(hidden_dim, c, h, w)
        else:
            self.features = nn.Identity()  # no parameters: MLP state_dict keys are unchanged
            feature_dim = input_dim
            output = nn.Linear(hidden_dim, input_dim)
        self.encoder = _mlp(feature_dim + label_in, hidden_dim)
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_log_var = nn.Linear(hidden_dim, latent_dim)
        if conditioning == "additive":
            self.label_projector = nn.Sequential(nn.Linear(num_classes, latent_dim), nn.ReLU())
        self.decoder = nn.Sequential(_mlp(latent_dim + label_in, hidden_dim), output)

    def _one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()  # (B, K)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior q(z|x[,y]) as (mu, log_var), each (B, latent_dim), for flat x (B, D)."""
        h = self.features(x)  # (B, D) for the MLP, (B, 64 * H/4 * W/4) for conv
        if self.conditioning == "concat":
            h = torch.cat([h, self._one_hot(y).to(h.dtype)], dim=1)  # (B, F + K)
        h = self.encoder(h)  # (B, hidden)
        return self.to_mu(h), self.to_log_var(h)

    def reparameterize(
        self, mu: torch.Tensor, log_var: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw z = mu + sigma * eps so gradients flow through mu and sigma.

        eps comes from `generator` (drawn on the generator's device, then moved) when given, so training
        noise is reproducible and the same on CPU and GPU; otherwise from the global RNG.
        """
        eps = _standard_normal(mu.shape, generator, like=mu)  # (B, latent)
        return mu + torch.exp(0.5 * log_var) * eps

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return pixel logits (B, D) for latents z (B, latent_dim) and labels y (B,)."""
        if self.conditioning == "concat":
            z = torch.cat([z, self._one_hot(y).to(z.dtype)], dim=1)  # (B, latent + K)
        else:
            z = z + self.label_projector(self._one_hot(y))  # (B, latent)
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (logits (B, D), mu, log_var) for images x (B, D) and labels y (B,)."""
        mu, log_var = self.encode(x, y)
        z = self.reparameterize(mu, log_var, generator=generator)
        return self.decode(z, y), mu, log_var

    @torch.no_grad()
    def sample(
        self, labels: torch.Tensor, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Return pixel probabilities (B, D) in [0, 1] for the given int64 labels (B,).

        z ~ N(0, temperature^2 I) is drawn from `generator` on its own device, so a CPU generator gives the
        same latents whichever device the model is on.
        """
        device = next(self.parameters()).device
        labels = labels.to(device)
        z = _standard_normal((labels.shape[0], self.latent_dim), generator, like=None, device=device)
        return torch.sigmoid(self.decode(z * temperature, labels))


def elbo_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (loss, recon, kl), each the mean per image in nats; loss = recon + beta * kl.

    recon is the Bernoulli negative log-likelihood of x under the decoder, summed over pixels (x may be
    grey levels in [0, 1]; BCE is then the cross-entropy against soft targets). Inputs are promoted to
    float32 (they are bf16 under autocast), so the sums are never taken in low precision.
    """
    logits, mu, log_var = logits.float(), mu.float(), log_var.float()
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)  # (B,)
    # KL(N(mu, sigma^2) || N(0, I)) in closed form: Kingma & Welling 2014, "Auto-Encoding Variational Bayes",
    # Appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=1)  # (B,)
    recon, kl = recon.mean(), kl.mean()
    return recon + beta * kl, recon, kl


def build_model(
    cfg: TrainConfig,
    input_dim: int,
    num_classes: int,
    *,
    image_shape: tuple[int, int, int] | None = None,
    architecture: str | None = None,
) -> CVAE:
    """Build the CVAE described by `cfg` (weights come from the current global RNG).

    `architecture` ("mlp" or "conv") overrides `cfg.architecture`; checkpoints pass the one they stored, so
    a model is rebuilt as trained even if the meaning of "auto" ever changes.

    Raises:
        ValueError: if the conv body is asked for an image shape it cannot take.
    """
    return CVAE(
        input_dim,
        num_classes,
        latent_dim=cfg.latent_dim,
        hidden_dim=cfg.hidden_dim,
        conditioning=cfg.conditioning,
        image_shape=image_shape,
        architecture=architecture or resolve_architecture(cfg.architecture, image_shape),
    )


def _conv_shape(image_shape: tuple[int, int, int] | None, input_dim: int) -> tuple[int, int, int]:
    if image_shape is None:
        raise ValueError("architecture 'conv' needs the image shape")
    c, h, w = image_shape
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"architecture 'conv' needs height and width divisible by 4, got {h}x{w}")
    if c * h * w != input_dim:
        raise ValueError(f"image shape {image_shape} does not match input_dim {input_dim}")
    return c, h, w


def _conv_encoder(c: int, h: int, w: int) -> nn.Sequential:
    c1, c2 = CONV_CHANNELS
    return nn.Sequential(
        nn.Unflatten(1, (c, h, w)),  # (B, C, H, W)
        nn.Conv2d(c, c1, kernel_size=4, stride=2, padding=1),  # (B, 32, H/2, W/2)
        nn.ReLU(),
        nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1),  # (B, 64, H/4, W/4)
        nn.ReLU(),
        nn.Flatten(),  # (B, 64 * H/4 * W/4)
    )


def _conv_decoder_head(hidden_dim: int, c: int, h: int, w: int) -> nn.Sequential:
    c1, c2 = CONV_CHANNELS
    return nn.Sequential(
        nn.Linear(hidden_dim, c2 * (h // 4) * (w // 4)),
        nn.ReLU(),
        nn.Unflatten(1, (c2, h // 4, w // 4)),  # (B, 64, H/4, W/4)
        nn.ConvTranspose2d(c2, c1, kernel_size=4, stride=2, padding=1),  # (B, 32, H/2, W/2)
        nn.ReLU(),
        nn.ConvTranspose2d(c1, c, kernel_size=4, stride=2, padding=1),  # (B, C, H, W) logits
        nn.Flatten(),  # (B, C*H*W)
    )


def _mlp(in_dim: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU())


def _standard_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    like: torch.Tensor | None,
    device: torch.device | None = None,
) -> torch.Tensor:
    # Always drawn in float32 (then cast), so the random stream is the same under bf16 autocast.
    target = like.device if like is not None else device
    dtype = like.dtype if like is not None else torch.float32
    if generator is None:
        return torch.randn(shape, device=target).to(dtype)
    return torch.randn(shape, generator=generator, device=generator.device).to(target, dtype)
