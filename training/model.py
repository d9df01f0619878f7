"""Class-conditional VAE (CVAE) on flattened images, and its loss.

Two ways for the label to reach the model, chosen by `TrainConfig.conditioning`:

- "concat" (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep Conditional
  Generative Models"): the one-hot label is concatenated to the encoder input and to z before decoding.
- "additive" (the course design, kept faithful): the encoder sees only x; the label goes through
  `label_projector` (Linear + ReLU into latent space) and is added to z before decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import CONDITIONINGS, TrainConfig


class CVAE(nn.Module):
    """MLP encoder/decoder CVAE whose decoder outputs Bernoulli logits per pixel.

    `image_shape` (C, H, W) is carried so that samplers can turn flat outputs back into images; it is
    not used by the network itself and may be None for a model built without a dataset at hand.
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
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.conditioning = conditioning
        self.image_shape = image_shape
        label_in = num_classes if conditioning == "concat" else 0
        self.encoder = _mlp(input_dim + label_in, hidden_dim)
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_log_var = nn.Linear(hidden_dim, latent_dim)
        if conditioning == "additive":
            self.label_projector = nn.Sequential(nn.Linear(num_classes, latent_dim), nn.ReLU())
        self.decoder = nn.Sequential(
            _mlp(latent_dim + label_in, hidden_dim), nn.Linear(hidden_dim, input_dim)
        )

    def _one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()  # (B, K)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior q(z|x[,y]) as (mu, log_var), each (B, latent_dim)."""
        if self.conditioning == "concat":
            x = torch.cat([x, self._one_hot(y)], dim=1)  # (B, D + K)
        h = self.encoder(x)  # (B, hidden)
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
            z = torch.cat([z, self._one_hot(y)], dim=1)  # (B, latent + K)
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
    grey levels in [0, 1]; BCE is then the cross-entropy against soft targets).
    """
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)  # (B,)
    # KL(N(mu, sigma^2) || N(0, I)) in closed form: Kingma & Welling 2014, "Auto-Encoding Variational Bayes",
    # Appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=1)  # (B,)
    recon, kl = recon.mean(), kl.mean()
    return recon + beta * kl, recon, kl


def build_model(
    cfg: TrainConfig, input_dim: int, num_classes: int, *, image_shape: tuple[int, int, int] | None = None
) -> CVAE:
    """Build the CVAE described by `cfg` (weights come from the current global RNG)."""
    return CVAE(
        input_dim,
        num_classes,
        latent_dim=cfg.latent_dim,
        hidden_dim=cfg.hidden_dim,
        conditioning=cfg.conditioning,
        image_shape=image_shape,
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
    target = like.device if like is not None else device
    dtype = like.dtype if like is not None else torch.float32
    if generator is None:
        return torch.randn(shape, device=target, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(target)
