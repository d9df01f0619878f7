"""Privacy report: do synthetic samples sit closer to the training images than to unseen ones?

Exact nearest neighbours (Euclidean, `torch.cdist` in chunks, so memory stays bounded by
`CHUNK` x reference rows) between three sets of the same space (flat pixels, or the evaluation
classifier's penultimate-layer features):

- S: the synthetic samples scored;
- T: real training images, and H: real held-out images, equal-size seeded subsets (`equal_subsets`).

Figures (`privacy_report`), with d(x, A) the distance from x to its nearest neighbour in A:

- dcr_share = mean over s in S of [d(s, T) < d(s, H)] + 0.5 [d(s, T) = d(s, H)]. About 0.5 when the
  model has not memorised (T and H are two draws of the same distribution); 1 for copies of T.
- median_dcr_train = median d(s, T); median_dcr_holdout = median d(s, H);
  median_real_nn = median over t in T of d(t, T \\ {t}), the real data's own spacing, for scale.
- near_copies = share of s with d(s, T) < q01, q01 the 1st percentile of d(t, T \\ {t}) over t in T;
  near_copies_count is the same as a count.
- nndr = median over s of d1(s, T) / d2(s, T) (nearest / second-nearest training distance); near 0 means
  a sample sits on one training image and far from the rest.

Pure torch; no downloads. The report is outside any differential-privacy guarantee (it reads the data).
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK = 1024  # query rows per cdist block
SPACES = ("pixels", "features")


def nearest_distances(
    query: torch.Tensor, reference: torch.Tensor, k: int = 1, *, exclude_self: bool = False
) -> torch.Tensor:
    """Return the k smallest Euclidean distances (N, k), ascending, from each query row to `reference`.

    Args:
        query: (N, D) float.
        reference: (M, D) float.
        k: neighbours per row (at most M, or M - 1 with `exclude_self`).
        exclude_self: `query` is `reference`; row i's own entry i is ignored (not its duplicates).
    """
    q, r = query.double(), reference.double()
    out = []
    for start in range(0, len(q), CHUNK):
        d = torch.cdist(q[start : start + CHUNK], r)  # (chunk, M)
        if exclude_self:
            rows = torch.arange(len(d))
            d[rows, rows + start] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).values)
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.float64)


# Fewer real rows per set than this and nearest-neighbour figures mean nothing (and the 1st percentile is a
# single distance): the report is skipped with this reason instead of failing the job.
MIN_REAL_ROWS = 3


def equal_subsets(
    train: torch.Tensor, holdout: torch.Tensor, *, seed: int, max_size: int = 2000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded subsets of `train` and `holdout` of one size: min(len(train), len(holdout), max_size)."""
    n = min(len(train), len(holdout), max_size)
    g = torch.Generator().manual_seed(int(seed))
    return train[torch.randperm(len(train), generator=g)[:n]], holdout[
        torch.randperm(len(holdout), generator=g)[:n]
    ]


def dcr_share(to_train: torch.Tensor, to_holdout: torch.Tensor) -> float:
    """Share of samples nearer a training image than a held-out one; ties count half."""
    closer = (to_train < to_holdout).double() + 0.5 * (to_train == to_holdout).double()
    return float(closer.mean()) if len(closer) else float("nan")


def privacy_report(synthetic: torch.Tensor, train: torch.Tensor, holdout: torch.Tensor) -> dict[str, Any]:
    """The module doc's figures in one space; `train` and `holdout` must be equal-size (see equal_subsets).

    Args:
        synthetic: (N, D) synthetic samples.
        train: (M, D) real training rows; M >= 3.
        holdout: (M, D) real held-out rows.
    """
    if len(train) != len(holdout):
        raise ValueError(f"train and holdout must be the same size, got {len(train)} and {len(holdout)}")
    if len(train) < MIN_REAL_ROWS or len(synthetic) == 0:
        raise ValueError(
            f"a privacy report needs at least {MIN_REAL_ROWS} real rows per set and 1 synthetic sample"
        )
    to_train = nearest_distances(synthetic, train, k=2)  # (N, 2)
    to_holdout = nearest_distances(synthetic, holdout, k=1)[:, 0]
    real_nn = nearest_distances(train, train, k=1, exclude_self=True)[:, 0]
    threshold = float(torch.quantile(real_nn, 0.01))
    near = int((to_train[:, 0] < threshold).sum())
    ratio = to_train[:, 0] / to_train[:, 1].clamp_min(1e-12)
    return {
        "dcr_share": dcr_share(to_train[:, 0], to_holdout),
        "median_dcr_train": float(to_train[:, 0].median()),
        "median_dcr_holdout": float(to_holdout.median()),
        "median_real_nn": float(real_nn.median()),
        "near_copy_threshold": threshold,
        "near_copies": near / len(synthetic),
        "near_copies_count": near,
        "nndr": float(ratio.median()),
        "synthetic": len(synthetic),
        "real_per_set": len(train),
    }


def gate_figures(report: dict[str, Any]) -> dict[str, float]:
    """The worst (highest) dcr_share and near_copies over the report's spaces: what gates compare."""
    spaces = [report[s] for s in SPACES if s in report]
    if not spaces:  # a skipped report (too few real images) has no figures to gate on
        return {}
    return {
        "dcr_share": max(float(s["dcr_share"]) for s in spaces),
        "near_copies": max(float(s["near_copies"]) for s in spaces),
    }
