"""The champion/challenger gate: TSTR must improve, conditional accuracy must not fall too far."""

from __future__ import annotations

from synthjobs.rules.promotion import Policy, decide

CHAMPION = {"tstr": 0.95, "conditional_accuracy": 0.99, "heldout_neg_elbo": 22.0}


def test_first_model_of_a_name_becomes_champion() -> None:
    decision = decide(CHAMPION, None, Policy())
    assert decision.promote and "first model" in decision.reason


def test_better_tstr_is_promoted_even_with_a_worse_elbo() -> None:
    challenger = {"tstr": 0.97, "conditional_accuracy": 0.985, "heldout_neg_elbo": 25.0}
    decision = decide(challenger, CHAMPION, Policy(min_tstr_gain=0.005, max_accuracy_drop=0.01))
    assert decision.promote
    assert "TSTR 0.9700 vs 0.9500" in decision.reason and "-ELBO 25.00 vs 22.00" in decision.reason
    assert decision.figures["champion"] == CHAMPION


def test_gain_below_the_margin_keeps_the_champion() -> None:
    challenger = {"tstr": 0.953, "conditional_accuracy": 0.99, "heldout_neg_elbo": 21.0}
    decision = decide(challenger, CHAMPION, Policy(min_tstr_gain=0.005))
    assert not decision.promote and "did not improve" in decision.reason


def test_equal_tstr_keeps_the_champion_even_with_no_margin() -> None:
    assert not decide(dict(CHAMPION), CHAMPION, Policy(min_tstr_gain=0.0)).promote


def test_accuracy_drop_past_the_tolerance_keeps_the_champion() -> None:
    challenger = {"tstr": 0.99, "conditional_accuracy": 0.95, "heldout_neg_elbo": 21.0}
    decision = decide(challenger, CHAMPION, Policy(max_accuracy_drop=0.01))
    assert not decision.promote and "conditional accuracy dropped" in decision.reason
