"""Fidelity report: how close the synthetic distribution is to the real one, in a feature space.

Computed in the evaluation classifier's penultimate-layer features (`training.classifier.features`),
named by `extractor` next to every figure: Inception weights cannot be downloaded here, and the
figures compare models scored with the same extractor only. Real rows are the held-out (test) split.

- frechet_distance (FD, Heusel et al. 2017): |mu_r - mu_s|^2 + Tr(C_r + C_s - 2 (C_r C_s)^(1/2)),
  Gaussian fits of the two feature sets; 0 for identical sets.
- kid (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged over
  `KID_SUBSETS` seeded subsets of up to `KID_SUBSET_SIZE` rows.
- precision / recall (Kynkaanniemi et al. 2019): radius r(x) = distance to x's k-th nearest neighbour in
  its own set; precision = share of synthetic s inside some real ball (|s - x| <= r(x)), recall = share
  of real x inside some synthetic ball.
- density / coverage (Naeem et al. 2020): density = (1 / kM) sum over s of the number of real balls that
  contain s; coverage = share of real x whose nearest synthetic sample is inside x's ball.
k = `K_NEIGHBOURS` (5, Naeem's recommendation) for all four.
"""

from __future__ import annotations

from typing import Any

import torch

from training.privacy import CHUNK, nearest_distances

K_NEIGHBOURS = 5
KID_SUBSETS = 10
KID_SUBSET_SIZE = 1000


def frechet_distance(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of (N, D) `real` and (M, D) `synthetic` features."""
    a, b = real.double(), synthetic.double()
    mu = a.mean(0) - b.mean(0)
    ca, cb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    # Tr((Ca Cb)^(1/2)) = sum of sqrt of the eigenvalues of Ca^(1/2) Cb Ca^(1/2), which is symmetric PSD.
    vals, vecs = torch.linalg.eigh(ca)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root @ cb @ root).clamp_min(0).sqrt().sum()
    return float(mu @ mu + ca.trace() + cb.trace() - 2 * cross)


def kid(real: torch.Tensor, synthetic: torch.Tensor, *, seed: int = 0) -> float:
    """Kernel inception distance (unbiased polynomial-kernel MMD^2), mean over seeded subsets."""
    a, b = real.double(), synthetic.double()
    n = min(len(a), len(b), KID_SUBSET_SIZE)
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(int(seed))
    d = a.shape[1]
    values = []
    for _ in range(KID_SUBSETS):
        x = a[torch.randperm(len(a), generator=g)[:n]]
        y = b[torch.randperm(len(b), generator=g)[:n]]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = n * (n - 1)
        values.append((kxx.sum() - kxx.trace()) / off + (kyy.sum() - kyy.trace()) / off - 2 * kxy.mean())
    return float(torch.stack(values).mean())


def _inside_counts(query: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query row, how many balls (centres[j], radii[j]) contain it."""
    counts = []
    for start in range(0, len(query), CHUNK):
        d = torch.cdist(query[start : start + CHUNK], centres)  # (chunk, M)
        counts.append((d <= radii[None, :]).sum(dim=1))
    return torch.cat(counts) if counts else torch.empty(0, dtype=torch.int64)


def manifold_scores(real: torch.Tensor, synthetic: torch.Tensor, k: int = K_NEIGHBOURS) -> dict[str, float]:
    """Precision, recall, density and coverage (module doc) with k nearest neighbours."""
    a, b = real.double(), synthetic.double()
    k_real, k_syn = min(k, len(a) - 1), min(k, len(b) - 1)
    if k_real < 1 or k_syn < 1:
        return {
            "precision": float("nan"),
            "recall": float("nan"),
            "density": float("nan"),
            "coverage": float("nan"),
        }
    real_r = nearest_distances(a, a, k_real, exclude_self=True)[:, -1]
    syn_r = nearest_distances(b, b, k_syn, exclude_self=True)[:, -1]
    in_real = _inside_counts(b, a, real_r)  # (M_syn,) real balls containing each synthetic sample
    nearest_syn = nearest_distances(a, b, 1)[:, 0]
    return {
        "precision": float((in_real > 0).double().mean()),
        "recall": float((_inside_counts(a, b, syn_r) > 0).double().mean()),
        "density": float(in_real.double().sum() / (k_real * len(b))),
        "coverage": float((nearest_syn <= real_r).double().mean()),
    }


def fidelity_figures(real: torch.Tensor, synthetic: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
    """FD, KID and the four manifold scores of one pair of feature sets."""
    return {
        "frechet_distance": frechet_distance(real, synthetic),
        "kid": kid(real, synthetic, seed=seed),
        **manifold_scores(real, synthetic),
    }


def fidelity_report(
    real: torch.Tensor,
    real_labels: torch.Tensor,
    synthetic: torch.Tensor,
    synthetic_labels: torch.Tensor,
    *,
    extractor: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Overall and per-class fidelity figures; `extractor` names the feature space they were taken in.

    Returns:
        {"extractor", "k", "overall": {...}, "per_class": {str(class): {...}}}; a class with fewer than
        two rows on either side is absent from "per_class".
    """
    per_class: dict[str, dict[str, float]] = {}
    for c in sorted(set(real_labels.tolist()) & set(synthetic_labels.tolist())):
        r, s = real[real_labels == c], synthetic[synthetic_labels == c]
        if len(r) >= 2 and len(s) >= 2:
            per_class[str(c)] = fidelity_figures(r, s, seed=seed)
    return {
        "extractor": extractor,
        "k": K_NEIGHBOURS,
        "overall": fidelity_figures(real, synthetic, seed=seed),
        "per_class": per_class,
    }
