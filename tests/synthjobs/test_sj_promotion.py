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


MEMORISER = {
    "tstr": 0.99,
    "conditional_accuracy": 1.0,
    "heldout_neg_elbo": 20.0,
    "dcr_share": 0.93,
    "near_copies": 0.4,
}


def test_a_memorising_first_model_is_not_promoted_past_a_dcr_share_ceiling() -> None:
    decision = decide(MEMORISER, None, Policy(max_dcr_share=0.6))
    assert not decision.promote
    assert "DCR share 0.9300 exceeds the policy's max_dcr_share 0.6000" in decision.reason


def test_a_better_challenger_with_too_many_near_copies_keeps_the_champion() -> None:
    decision = decide(MEMORISER, CHAMPION, Policy(max_near_copies=0.05))
    assert not decision.promote and "near copies 0.4000 exceeds" in decision.reason


def test_a_challenger_within_the_privacy_ceilings_is_judged_on_tstr() -> None:
    challenger = {**MEMORISER, "dcr_share": 0.51, "near_copies": 0.0}
    assert decide(challenger, CHAMPION, Policy(max_dcr_share=0.55, max_near_copies=0.01)).promote


def test_a_privacy_ceiling_without_a_privacy_report_refuses() -> None:
    decision = decide(dict(CHAMPION), None, Policy(max_dcr_share=0.55))
    assert not decision.promote and "no privacy report" in decision.reason
