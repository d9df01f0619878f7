import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.model import CVAE, build_model, elbo_loss


def _model(conditioning: str) -> CVAE:
    torch.manual_seed(0)
    return CVAE(64, 10, latent_dim=4, hidden_dim=32, conditioning=conditioning)


def test_sample_returns_requested_labels_and_shape() -> None:
    model = _model("concat")
    labels = torch.tensor([0, 3, 3, 9])
    p = model.sample(labels, generator=torch.Generator().manual_seed(1))
    assert p.shape == (4, 64)
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_sample_is_reproducible_for_a_generator_seed_and_scales_with_temperature() -> None:
    model = _model("concat")
    labels = torch.arange(10)
    a = model.sample(labels, generator=torch.Generator().manual_seed(5))
    b = model.sample(labels, generator=torch.Generator().manual_seed(5))
    cold = model.sample(labels, generator=torch.Generator().manual_seed(5), temperature=0.0)
    mean = torch.sigmoid(model.decode(torch.zeros(10, 4), labels))
    assert torch.equal(a, b)
    assert torch.allclose(cold, mean)


def test_additive_decoder_adds_projected_label_to_z() -> None:
    model = _model("additive")
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 4])
    shifted = z + model.label_projector(F.one_hot(y, 10).float())
    assert torch.equal(model.decode(z, y), model.decoder(shifted))
    assert model.label_projector[0].in_features == 10 and model.label_projector[0].out_features == 4
    assert isinstance(model.label_projector[1], torch.nn.ReLU)


def test_additive_encoder_ignores_the_label() -> None:
    model = _model("additive")
    x = torch.rand(3, 64)
    mu_a, log_var_a = model.encode(x, torch.tensor([0, 0, 0]))
    mu_b, log_var_b = model.encode(x, torch.tensor([7, 8, 9]))
    assert torch.equal(mu_a, mu_b) and torch.equal(log_var_a, log_var_b)


def test_concat_encoder_and_decoder_see_the_label() -> None:
    model = _model("concat")
    x, z = torch.rand(3, 64), torch.randn(3, 4)
    y0, y1 = torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1])
    assert not torch.equal(model.encode(x, y0)[0], model.encode(x, y1)[0])
    assert not torch.equal(model.decode(z, y0), model.decode(z, y1))
    assert model.encoder[0].in_features == 64 + 10
    assert model.decoder[0][0].in_features == 4 + 10


def test_forward_returns_logits_and_posterior_shapes() -> None:
    model = _model("concat")
    logits, mu, log_var = model(
        torch.rand(6, 64), torch.arange(6), generator=torch.Generator().manual_seed(0)
    )
    assert logits.shape == (6, 64) and mu.shape == (6, 4) and log_var.shape == (6, 4)


def test_elbo_loss_is_mean_per_image_of_summed_bce_plus_closed_form_kl() -> None:
    logits, x = torch.randn(4, 64), torch.rand(4, 64)
    mu, log_var = torch.randn(4, 3), torch.randn(4, 3)
    loss, recon, kl = elbo_loss(logits, x, mu, log_var, beta=0.5)
    expected_recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 4
    # KL of N(mu, sigma^2) from N(0, 1) through torch.distributions, as an independent check.
    q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var))
    expected_kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum() / 4
    assert torch.allclose(recon, expected_recon) and torch.allclose(kl, expected_kl, atol=1e-5)
    assert torch.allclose(loss, recon + 0.5 * kl)


def test_kl_is_zero_when_posterior_equals_prior() -> None:
    _, _, kl = elbo_loss(torch.zeros(2, 8), torch.rand(2, 8), torch.zeros(2, 3), torch.zeros(2, 3))
    assert float(kl) == 0.0


def test_build_model_follows_config() -> None:
    cfg = TrainConfig(conditioning="additive", latent_dim=5, hidden_dim=17)
    model = build_model(cfg, 64, 10, image_shape=(1, 8, 8))
    assert model.conditioning == "additive" and model.latent_dim == 5 and model.image_shape == (1, 8, 8)
    assert model.to_mu.out_features == 5 and model.to_mu.in_features == 17
