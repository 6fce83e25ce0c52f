"""The route policy: features, the pooled prior, the posterior and the decision rule, on planted data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from index_builder.evaluation.route_policy import (
    DENSE,
    MARGINS,
    Evidence,
    Prior,
    RouteBelief,
    Rule,
    Signals,
    choose,
    decide_pair,
    features,
    fit_prior,
    paired_evidence,
)

LANGS = ["ar", "de", "en", "es", "fr", "he", "sw"]


def _signals(seed: int = 0) -> Signals:
    """Leg qualities where English legs are strong and every other leg weak, plus noise."""
    rng = np.random.default_rng(seed)
    legs = {}
    for a, b in itertools.permutations(LANGS, 2):
        strong = "en" in (a, b)
        top1 = (0.6 if strong else 0.2) + rng.normal(0, 0.03)
        legs[(a, b)] = (-1.0 - 2.0 * (1 - top1), top1)
    sims = {(a, b): float(rng.uniform(0, 1)) for a, b in itertools.combinations(LANGS, 2)}
    return Signals(LANGS, legs=legs, similarity=sims)


def _planted(signals: Signals, pairs, noise: float = 1.0, seed: int = 1) -> list[Evidence]:
    """Gains that follow the leg qualities: 40 × (weakest leg's top-1 − direct's top-1), with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, t in pairs:
        for b in signals.candidates(s, t):
            f = features(signals, s, t, b)
            gain = 40 * min(f["top1_source_bridge"], f["top1_bridge_target"]) + rng.normal(0, noise)
            rows.append(Evidence(s, t, b, 60, gain, 2.0))
    return rows


PAIRS = [(s, t) for s, t in itertools.permutations(LANGS, 2) if "en" not in (s, t)]


def test_features_compare_each_leg_with_the_direct_leg():
    sig = _signals()
    f = features(sig, "sw", "fr", "en")
    assert f["top1_source_bridge"] == pytest.approx(sig.legs[("sw", "en")][1] - sig.legs[("sw", "fr")][1])
    assert f["top1_bridge_target"] == pytest.approx(sig.legs[("en", "fr")][1] - sig.legs[("sw", "fr")][1])
    assert f["similarity_source_bridge"] == sig.similarity[("en", "sw")]
    assert f["bridge=en"] == f["source=sw"] == f["target=fr"] == 1.0
    assert f["hsic_probability"] == 0.0  # no ranking given


def test_without_leg_quality_the_leg_features_are_zero():
    f = features(Signals(LANGS), "sw", "fr", "en")
    assert f["top1_source_bridge"] == f["logprob_weakest_leg"] == 0.0


def test_no_evidence_means_direct_from_the_prior():
    choice = decide_pair([], _signals(), "sw", "fr", "word")
    assert choice.route == "direct"
    assert choice.origin == "prior"
    assert choice.best is not None and choice.best.mean == 0.0


def test_the_prior_learns_from_other_pairs_that_the_strong_pivot_helps():
    sig = _signals()
    rows = _planted(sig, PAIRS)
    held_out = ("sw", "fr")
    choice = decide_pair([e for e in rows if e.pair != held_out], sig, *held_out, "word")
    assert choice.origin == "prior"
    assert choice.route == "en"
    assert choice.expected_gain > 5
    assert choice.p_gain >= 0.95


def test_the_prior_keeps_direct_when_no_route_helped_anywhere():
    sig = _signals()
    rng = np.random.default_rng(3)
    rows = [
        Evidence(s, t, b, 60, float(rng.normal(-3, 1)), 2.0) for s, t in PAIRS for b in sig.candidates(s, t)
    ]
    choice = decide_pair([e for e in rows if e.pair != ("sw", "fr")], sig, "sw", "fr", "word")
    assert choice.route == "direct"
    assert choice.best is not None and choice.best.mean < 0


def test_a_pairs_own_strong_evidence_overrides_the_prior():
    sig = _signals()
    rows = [e for e in _planted(sig, PAIRS) if e.pair != ("sw", "fr")]
    own = [Evidence("sw", "fr", b, 400, -15.0, 0.5) for b in sig.candidates("sw", "fr")]
    choice = decide_pair(rows + own, sig, "sw", "fr", "word")
    assert choice.origin == "evidence"
    assert choice.route == "direct"
    assert choice.n == 400


def test_the_pair_with_evidence_only_chooses_among_measured_routes():
    sig = _signals()
    rows = [e for e in _planted(sig, PAIRS, noise=10.0) if e.pair != ("sw", "fr")]
    own = [Evidence("sw", "fr", "de", 60, 30.0, 3.0)]
    choice = decide_pair(rows + own, sig, "sw", "fr", "word")
    assert choice.route == "de"  # English was never measured on this pair: not a candidate here


def test_the_prior_recovers_the_sign_of_a_planted_coefficient():
    sig = _signals()
    prior = fit_prior(_planted(sig, PAIRS), sig)
    coef = dict(zip(prior.names, prior.coef, strict=True))
    assert coef["top1_source_bridge"] + coef["top1_bridge_target"] > 0
    assert prior.n_pairs == len(PAIRS)
    assert prior.lam > 0
    again = Prior.from_dict(prior.as_dict())
    f = features(sig, "sw", "fr", "en")
    assert again.predict(f) == pytest.approx(prior.predict(f))


def test_the_rule_needs_both_a_likely_gain_and_an_unlikely_loss():
    margin = MARGINS["word"]
    sure = RouteBelief("en", 5.0, 1.0, 60)
    likely_but_risky = RouteBelief("de", 6.0, 3.5, 60)  # P(gain>0) 0.957, P(loss<-2.5) 0.0075
    unsure = RouteBelief("fr", 2.0, 2.0, 60)
    assert sure.p_gain() > 0.95 and sure.p_loss(margin) < 0.05
    assert unsure.p_gain() < 0.95
    assert choose([sure, unsure], margin).route == "en"
    assert choose([unsure], margin).route == "direct"
    # among eligible routes: the highest expected gain
    assert likely_but_risky.p_gain() >= 0.95 and likely_but_risky.p_loss(margin) <= 0.05
    assert choose([sure, likely_but_risky], margin).route == "de"
    wide = RouteBelief("es", 4.0, 2.0, 60)  # P(gain>0) 0.977, P(loss<-2.5) 0.0006 → eligible
    assert choose([wide], margin).route == "es"
    assert choose([RouteBelief("es", 4.0, 2.5, 60)], margin).route == "direct"  # P(gain>0) 0.945


def test_paired_evidence_is_the_mean_difference_with_a_floor_on_its_error():
    ev = paired_evidence("sw", "fr", "en", [100, 100, 0, 100], [0, 100, 0, 0])
    assert ev.gain == pytest.approx(50.0)
    assert ev.se == pytest.approx(math.sqrt(np.var([100, 0, 0, 100], ddof=1) / 4))
    ties = paired_evidence("sw", "fr", "en", [100] * 50, [100] * 50)
    assert ties.gain == 0.0
    assert ties.se == pytest.approx(100 / 50)  # as if one word of 50 differed
    with pytest.raises(ValueError, match="no paired items"):
        paired_evidence("sw", "fr", "en", [], [])


def test_evidence_of_fewer_than_three_pairs_is_no_prior():
    sig = _signals()
    rows = _planted(sig, [("ar", "fr"), ("he", "de")])
    assert fit_prior(rows, sig).n_pairs == 0
    assert decide_pair(rows, sig, "sw", "fr", "word").route == "direct"
    assert fit_prior(_planted(sig, [("ar", "fr"), ("he", "de"), ("sw", "es")]), sig).n_pairs == 3


def test_decide_pair_follows_its_rule_thresholds():
    """A likely but not sure gain: taken by the shipped rule (expected gain), not by the confident one."""
    sig = _signals()
    own = [Evidence("ar", "fr", "en", 20, 4.0, 3.3)]  # P(gain > 0) about 0.88 under a vague prior
    assert decide_pair(own, sig, "ar", "fr", "translate").route == "en"
    assert decide_pair(own, sig, "ar", "fr", "translate", rule=Rule((DENSE,), 0.95, 0.05)).route == "direct"


def test_the_prior_reads_the_leg_qualities_when_they_predict_the_gain():
    sig = _signals()
    prior = fit_prior(_planted(sig, PAIRS, noise=0.5), sig)
    assert {"top1_source_bridge", "top1_bridge_target"} <= set(prior.dense)


def test_the_prior_reads_the_languages_only_when_the_features_predict_nothing():
    """Gains that belong to the bridge (English +6, every other −3) whatever the (random) leg qualities:
    leave-one-pair-out, the dense features only add noise, so the simplest set wins."""
    rng = np.random.default_rng(5)
    legs = {}
    for a, b in itertools.permutations(LANGS, 2):
        top1 = float(rng.uniform(0.05, 0.8))
        legs[(a, b)] = (-3.0 + 2.0 * top1, top1)
    sig = Signals(LANGS, legs=legs)
    rows = [
        Evidence(s, t, b, 60, (6.0 if b == "en" else -3.0) + float(rng.normal(0, 1.0)), 1.5)
        for s, t in PAIRS
        for b in sig.candidates(s, t)
    ]
    prior = fit_prior(rows, sig)
    assert prior.dense == []
    held_out = decide_pair([e for e in rows if e.pair != ("sw", "fr")], sig, "sw", "fr", "word")
    assert held_out.route == "en"
    only_legs = fit_prior(rows, sig, Rule((DENSE[:3],), 0.5, 0.5))
    assert only_legs.dense == list(DENSE[:3])  # a rule with one set reads that set
