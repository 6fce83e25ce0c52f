import math

import numpy as np
import pytest

from index_builder.indexing.neurons import (
    activation_probabilities,
    bridge_specific,
    jaccard,
    lape_neurons,
    layer_distribution,
    overlap,
    similarity,
    top_rate_neurons,
)

L, I = 4, 10  # noqa: E741 (layers, neurons): 40 neurons; top_rate 0.1 selects 4


@pytest.fixture
def planted() -> tuple[np.ndarray, np.ndarray]:
    """p_a and p_b with background below 0.1 and four planted top neurons each, two of them shared."""
    rng = np.random.default_rng(0)
    p_a = rng.uniform(0.0, 0.1, size=(L, I))
    p_b = rng.uniform(0.0, 0.1, size=(L, I))
    for (layer, j), value in {(1, 2): 0.9, (1, 5): 0.8, (2, 3): 0.7, (3, 7): 0.6}.items():
        p_a[layer, j] = value
    for (layer, j), value in {(1, 2): 0.5, (2, 3): 0.9, (0, 0): 0.8, (3, 9): 0.7}.items():
        p_b[layer, j] = value
    return p_a, p_b


def _mask(*neurons: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((L, I), dtype=bool)
    for layer, j in neurons:
        mask[layer, j] = True
    return mask


def test_activation_probabilities_divide_counts_by_tokens():
    counts = np.array([[[0, 5], [10, 2]], [[1, 1], [0, 4]]])  # (2 languages, 2 layers, 2 neurons)
    p = activation_probabilities(counts, np.array([10, 4]), ["de", "sw"])
    assert p.dtype == np.float64
    np.testing.assert_array_equal(p, [[[0.0, 0.5], [1.0, 0.2]], [[0.25, 0.25], [0.0, 1.0]]])


def test_language_without_tokens_is_named_in_the_error():
    counts = np.zeros((2, 2, 3))
    with pytest.raises(ValueError, match="'sw'") as excinfo:
        activation_probabilities(counts, np.array([7, 0]), ["de", "sw"])
    assert "'de'" not in str(excinfo.value)


def test_more_positive_tokens_than_tokens_is_rejected():
    with pytest.raises(ValueError, match="'de'"):
        activation_probabilities(np.full((1, 2, 2), 5), np.array([4]), ["de"])


def test_mismatched_language_list_is_rejected():
    with pytest.raises(ValueError, match="one language code per row"):
        activation_probabilities(np.zeros((2, 2, 2)), np.array([1, 1]), ["de"])


def test_top_rate_neurons_pick_the_planted_neurons(planted):
    p_a, p_b = planted
    np.testing.assert_array_equal(top_rate_neurons(p_a, 0.1), _mask((1, 2), (1, 5), (2, 3), (3, 7)))
    np.testing.assert_array_equal(top_rate_neurons(p_b, 0.1), _mask((1, 2), (2, 3), (0, 0), (3, 9)))


def test_top_rate_ties_go_to_the_lower_flat_index():
    p = np.full((3, 5), 0.5)
    p[2, 4] = 0.6
    mask = top_rate_neurons(p, 0.2)  # round(0.2 * 15) = 3
    np.testing.assert_array_equal(np.argwhere(mask), [[0, 0], [0, 1], [2, 4]])


def test_top_rate_selects_at_least_one_neuron():
    assert top_rate_neurons(np.linspace(0, 1, 40).reshape(L, I), 0.01).sum() == 1


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5])
def test_top_rate_outside_the_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match="top_rate"):
        top_rate_neurons(np.zeros((2, 2)), rate)


def test_overlap_jaccard_and_layer_distribution_of_planted_sets(planted):
    n_a, n_b = (top_rate_neurons(p, 0.1) for p in planted)
    o = overlap(n_a, n_b)
    np.testing.assert_array_equal(o, _mask((1, 2), (2, 3)))
    assert jaccard(n_a, n_b) == pytest.approx(2 / 6)  # 2 shared of 6 distinct
    np.testing.assert_array_equal(layer_distribution(o), [0, 1, 1, 0])
    np.testing.assert_array_equal(layer_distribution(n_b), [1, 1, 1, 1])
    assert layer_distribution(o).dtype == np.int64


def test_jaccard_of_two_empty_sets_is_zero():
    empty = np.zeros((L, I), dtype=bool)
    assert jaccard(empty, empty) == 0.0


def test_similarity_uses_the_overlap_neurons(planted):
    p_a, p_b = planted
    o = overlap(top_rate_neurons(p_a, 0.1), top_rate_neurons(p_b, 0.1))
    # By hand: overlap (1, 2) and (2, 3) -> p_a = (0.9, 0.7), p_b = (0.5, 0.9).
    expected = (0.9 * 0.5 + 0.7 * 0.9) / math.sqrt((0.9**2 + 0.7**2) * (0.5**2 + 0.9**2))
    assert similarity(p_a, p_b, o) == pytest.approx(expected, abs=1e-12)

    # The public script indexed with a list of (layer, neuron) tuples, which numpy reads as layer indices
    # ((2, 2, I) whole layers here). That value is far from the right one, so this test guards against it.
    tuples = np.array([(1, 2), (2, 3)])
    wrong_a, wrong_b = p_a[tuples].ravel(), p_b[tuples].ravel()
    buggy = wrong_a @ wrong_b / (np.linalg.norm(wrong_a) * np.linalg.norm(wrong_b))
    assert abs(buggy - expected) > 0.05


def test_similarity_is_none_for_an_empty_overlap_or_a_zero_vector(planted):
    p_a, p_b = planted
    assert similarity(p_a, p_b, np.zeros((L, I), dtype=bool)) is None
    zeros = p_a.copy()
    zeros[1, 2] = zeros[2, 3] = 0.0
    assert similarity(zeros, p_b, _mask((1, 2), (2, 3))) is None


def test_similarity_rejects_shape_mismatch(planted):
    p_a, p_b = planted
    with pytest.raises(ValueError, match="same shape"):
        similarity(p_a, p_b, np.zeros((L, I + 1), dtype=bool))


def test_bridge_specific_removes_the_pair_neurons():
    c = _mask((0, 0), (1, 1), (2, 2), (3, 3))
    s = _mask((0, 0), (0, 1))
    t = _mask((2, 2), (3, 4))
    np.testing.assert_array_equal(bridge_specific(c, s, t), _mask((1, 1), (3, 3)))


def test_masks_of_different_shapes_or_dtypes_are_rejected():
    with pytest.raises(ValueError, match="different shapes"):
        overlap(np.zeros((2, 3), dtype=bool), np.zeros((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="boolean mask"):
        jaccard(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))


@pytest.fixture
def lape_probs() -> np.ndarray:
    """3 languages × (2 layers, 10 neurons): 54 background values under 0.1 and three planted neurons."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.1, size=(3, 2, 10))
    p[:, 0, 1] = (0.95, 0.02, 0.03)  # specific to language 0: lowest entropy
    p[:, 1, 4] = (0.05, 0.90, 0.85)  # shared by languages 1 and 2
    p[:, 0, 7] = (0.80, 0.81, 0.82)  # active everywhere: highest entropy
    p[:, 1, 0] = (0.05, 0.0, 0.0)  # entropy 0 but never active enough: filtered out
    return p


def test_lape_keeps_low_entropy_neurons_and_assigns_them_to_active_languages(lape_probs):
    # filter bar = 54th smallest of 60 values = largest background value; 3 neurons survive,
    # top_rate 0.1 keeps round(0.1 * 20) = 2 of them by entropy, and the 0.9 bar assigns them.
    mask = lape_neurons(lape_probs, top_rate=0.1, filter_rate=0.9, activation_bar_ratio=0.9)
    assert mask.shape == (3, 2, 10)
    np.testing.assert_array_equal(np.argwhere(mask[0]), [[0, 1]])
    np.testing.assert_array_equal(np.argwhere(mask[1]), [[1, 4]])
    np.testing.assert_array_equal(np.argwhere(mask[2]), [[1, 4]])


def test_lape_never_keeps_filtered_neurons(lape_probs):
    mask = lape_neurons(lape_probs, top_rate=0.5, filter_rate=0.9, activation_bar_ratio=0.9)
    kept = mask.any(axis=0)
    np.testing.assert_array_equal(np.argwhere(kept), [[0, 1], [0, 7], [1, 4]])


def test_lape_activation_bar_pools_all_languages():
    p = np.array(
        [
            [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]],
            [[0.01] * 9 + [0.04]],
        ]
    )  # (2 languages, 1 layer, 10 neurons)
    # Pooled 10th smallest of 20 values = 0.04: every neuron survives (0.05 > 0.04) and language 1's best
    # value (0.04) is not above the bar. A bar from language 1's own values (median 0.01) would give it
    # neuron 9.
    mask = lape_neurons(p, top_rate=1.0, filter_rate=0.5, activation_bar_ratio=0.5)
    assert mask[0].all()
    assert not mask[1].any()


def test_top_rate_ties_are_broken_by_the_tiebreak_values():
    p = np.ones((3, 4))  # every neuron fires on every token
    tiebreak = np.zeros((3, 4))
    tiebreak[2, 1], tiebreak[1, 3] = 5.0, 4.0
    mask = top_rate_neurons(p, 2 / 12, tiebreak=tiebreak)
    np.testing.assert_array_equal(np.argwhere(mask), [[1, 3], [2, 1]])
    # without a tiebreak, position decides
    np.testing.assert_array_equal(np.argwhere(top_rate_neurons(p, 2 / 12)), [[0, 0], [0, 1]])


def test_top_rate_tiebreak_never_overrides_probability():
    p = np.array([[0.9, 0.5], [0.5, 0.1]])
    tiebreak = np.array([[0.0, 9.0], [1.0, 99.0]])
    mask = top_rate_neurons(p, 0.5, tiebreak=tiebreak)  # 0.9 first, then the 0.5 with larger tiebreak
    np.testing.assert_array_equal(np.argwhere(mask), [[0, 0], [0, 1]])
