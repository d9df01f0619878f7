"""Champion/challenger: whether a newly trained model takes over its name's `champion` alias.

The gate is what users of synthetic data care about — TSTR (a fixed classifier trained on a fixed number of
generated samples per class, tested on the real held-out split) and conditional accuracy — not the held-out
ELBO: measured on digits, lowering β from 1 to 0.25 made the ELBO worse yet raised TSTR. The ELBO is reported
beside them for context.

Privacy ceilings (`max_dcr_share`, `max_near_copies`, off by default) are absolute: a challenger whose
privacy report exceeds one, in pixel or in feature space (the worse of the two), is not promoted, even as
the first model of its name: a model that copies its training images must not become what users sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CHAMPION = "champion"


@dataclass(frozen=True)
class Policy:
    """Promote when TSTR improves (by at least `min_tstr_gain`) and conditional accuracy drops by at most
    `max_accuracy_drop`; both are fractions (0.005 = half a point). `skip_unchanged_data`: a scheduled
    run whose data has the champion's fingerprint does not retrain. `max_dcr_share` / `max_near_copies`:
    privacy ceilings (shares in [0, 1]) on the challenger alone; None is no ceiling."""

    min_tstr_gain: float = 0.005
    max_accuracy_drop: float = 0.01
    skip_unchanged_data: bool = False
    max_dcr_share: float | None = None
    max_near_copies: float | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Policy:
        return cls(**(values or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The verdict, its reason in words, and the figures side by side."""

    promote: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(challenger: dict[str, float], champion: dict[str, float] | None, policy: Policy) -> Decision:
    """Compare two models' figures (`tstr`, `conditional_accuracy`, `heldout_neg_elbo`), measured alike.

    The challenger's privacy figures (`dcr_share`, `near_copies`) are checked first against the policy's
    ceilings (module doc)."""
    refused = privacy_refusal(challenger, policy)
    if refused is not None:
        return Decision(False, refused, {"challenger": challenger, "policy": policy.to_dict()})
    if champion is None:
        return Decision(True, "first model of its name: becomes champion", {"challenger": challenger})
    figures = {"challenger": challenger, "champion": champion, "policy": policy.to_dict()}
    tstr_gain = challenger["tstr"] - champion["tstr"]
    accuracy_drop = champion["conditional_accuracy"] - challenger["conditional_accuracy"]
    elbo = (challenger.get("heldout_neg_elbo", float("nan")), champion.get("heldout_neg_elbo", float("nan")))
    side_by_side = (
        f"TSTR {challenger['tstr']:.4f} vs {champion['tstr']:.4f} ({tstr_gain:+.4f}), conditional accuracy "
        f"{challenger['conditional_accuracy']:.4f} vs {champion['conditional_accuracy']:.4f}, "
        f"held-out -ELBO {elbo[0]:.2f} vs {elbo[1]:.2f}"
    )
    if tstr_gain <= 0 or tstr_gain < policy.min_tstr_gain:
        return Decision(
            False,
            f"kept champion: TSTR did not improve by {policy.min_tstr_gain:.4f}; {side_by_side}",
            figures,
        )
    if accuracy_drop > policy.max_accuracy_drop:
        return Decision(
            False,
            f"kept champion: conditional accuracy dropped by more than "
            f"{policy.max_accuracy_drop:.4f}; {side_by_side}",
            figures,
        )
    return Decision(True, f"promoted: {side_by_side}", figures)


def privacy_refusal(challenger: dict[str, float], policy: Policy) -> str | None:
    """The reason a challenger breaks a privacy ceiling of `policy`, or None when it breaks none."""
    ceilings = (
        ("dcr_share", "DCR share", policy.max_dcr_share),
        ("near_copies", "near copies", policy.max_near_copies),
    )
    for key, label, ceiling in ceilings:
        if ceiling is None:
            continue
        if key not in challenger:
            return f"not promoted: the policy sets max_{key} but the model has no privacy report"
        if challenger[key] > ceiling:
            return (
                f"not promoted: {label} {challenger[key]:.4f} exceeds the policy's max_{key} {ceiling:.4f} "
                f"(the model is closer to its training images than to held-out ones: it memorises)"
            )
    return None
