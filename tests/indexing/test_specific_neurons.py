"""The default selector and similarity on planted activation statistics where the right answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from index_builder.indexing import bridges, neurons

N_LANG, N_LAYERS, N_NEURONS = 4, 3, 100
ALWAYS_ON = slice(0, 30)  # p = 1 in every language: the saturated neurons Gemma 3 is full of
OWN = {a: slice(40 + 5 * a, 45 + 5 * a) for a in range(N_LANG)}  # 5 per layer fire for one language only
FAMILY = slice(70, 76)  # fire for languages 0 and 1 only (a planted family)


def planted() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.5, size=(N_LAYERS, N_NEURONS))  # the same in every language: no information
    p = np.repeat(base[None], N_LANG, axis=0) + rng.normal(0, 0.005, size=(N_LANG, N_LAYERS, N_NEURONS))
    p[:, :, ALWAYS_ON] = 1.0
    for a, cols in OWN.items():  # the other languages stay at the background level
        p[a, :, cols] = 0.95
    p[:2, :, FAMILY] = 0.9
    return np.clip(p, 0.0, 1.0)


def test_always_on_neurons_are_never_language_neurons():
    masks = neurons.specific_neurons(planted(), top_rate=0.1, min_specificity=0.05)
    assert not masks[:, :, ALWAYS_ON].any()


def test_the_authors_selector_keeps_always_on_neurons():
    """Why `top-rate` is no longer the default: it keeps exactly the neurons that carry no information."""
    p = planted()
    masks = np.stack([neurons.top_rate_neurons(p_a, 0.05) for p_a in p])
    assert masks[:, :, ALWAYS_ON].sum() == masks.sum() > 0  # every neuron it keeps is always on
    assert np.logical_and.reduce(masks, axis=0).sum() > 0  # shared by every language


def test_planted_language_and_family_neurons_are_found_in_every_layer():
    masks = neurons.specific_neurons(planted(), top_rate=0.11, min_specificity=0.05)
    for a, cols in OWN.items():
        assert masks[a, :, cols].all(), a
    assert masks[:2, :, FAMILY].all()
    assert not masks[2:, :, FAMILY].any()
    assert (masks.sum(axis=2) <= round(0.11 * N_NEURONS)).all()  # at most k per layer


def test_neurons_below_the_specificity_floor_are_left_out_even_when_k_allows_them():
    masks = neurons.specific_neurons(planted(), top_rate=0.5, min_specificity=0.2)
    assert masks[0].sum() == N_LAYERS * (5 + 6)  # own + family, nothing of the background


def test_global_selection_takes_k_of_the_whole_model():
    masks = neurons.specific_neurons(planted(), top_rate=0.01, min_specificity=0.05, per_layer=False)
    assert masks.sum(axis=(1, 2)).tolist() == [3] * N_LANG


def test_specificity_is_zero_for_a_neuron_equal_in_every_language():
    s = neurons.specificity(planted())
    np.testing.assert_allclose(s[:, :, ALWAYS_ON], 0.0)
    assert s[1, 0, OWN[1]].min() > 0.4


def test_planted_family_comes_out_most_similar_and_similarity_varies():
    p = planted()
    sims = {
        (i, j): neurons.profile_correlation(p[i], p[j]) for i, j in itertools.combinations(range(N_LANG), 2)
    }
    assert max(sims, key=sims.get) == (0, 1)
    assert sims[(0, 1)] - max(v for k, v in sims.items() if k != (0, 1)) > 0.02
    assert np.std(list(sims.values())) > 0.01


def test_the_authors_cosine_is_flat_on_saturated_neurons_and_the_correlation_is_not():
    p = planted()
    masks = np.stack([neurons.top_rate_neurons(p_a, 0.05) for p_a in p])
    pairs = list(itertools.combinations(range(N_LANG), 2))
    cos = [neurons.similarity(p[i], p[j], masks[i] & masks[j]) for i, j in pairs]
    assert np.allclose(cos, 1.0)
    corr = [neurons.profile_correlation(p[i], p[j]) for i, j in pairs]
    assert max(corr) - min(corr) > 0.02


def test_profile_correlation_of_a_constant_profile_is_none():
    flat = np.full((2, 5), 1.0)
    assert neurons.profile_correlation(flat, planted()[0, :2, :5]) is None
    with pytest.raises(ValueError, match="same shape"):
        neurons.profile_correlation(flat, np.ones((2, 4)))


def test_specific_neurons_reject_bad_parameters():
    with pytest.raises(ValueError, match="min_specificity"):
        neurons.specific_neurons(planted(), min_specificity=0.0)
    with pytest.raises(ValueError, match="at least 2 languages"):
        neurons.specificity(planted()[:1])


# ------------------------------------------------------------------------------------------ set-size rule


def test_only_band_layers_with_both_sets_at_least_min_set_vote():
    results = {
        "de": {1: (0.9, 30, 2), 2: (0.2, 30, 25), 5: (0.99, 40, 40)},  # layer 1: bridge set too small
        "fr": {1: (0.5, 4, 30), 2: (0.6, 30, 30)},  # layer 1: overlap too small
        "it": {1: (0.7, 3, 3), 2: (0.9, 2, 40)},  # no layer qualifies
    }
    scores = bridges.voting_scores(results, band_layers=[1, 2, 3], min_set=5)
    assert scores == {"de": pytest.approx(0.2), "fr": pytest.approx(0.6)}  # layer 5 is outside the band


def test_a_pair_where_no_layer_qualifies_has_no_ranking():
    results = {"de": {1: (0.9, 30, 4)}, "fr": {2: (0.5, 1, 30)}}
    assert bridges.voting_scores(results, [1, 2], min_set=5) == {}
    assert bridges.voting_scores(results, [1, 2], min_set=1) == {"de": 0.9, "fr": 0.5}


def test_min_set_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        bridges.voting_scores({}, [1], min_set=0)
