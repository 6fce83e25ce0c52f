import dataclasses
import math

import pytest

from index_builder.indexing.bridges import (
    RankedBridge,
    bridge_scores,
    middle_band,
    rank_bridges,
    selection_probabilities,
)


@pytest.mark.parametrize(
    ("n_layers", "expected"),
    [(32, list(range(10, 22))), (18, list(range(6, 12))), (10, [3, 4, 5, 6]), (28, list(range(9, 19)))],
)
def test_middle_band_is_30_to_70_percent_of_depth(n_layers, expected):
    assert middle_band(n_layers) == expected


def test_middle_band_accepts_the_whole_depth():
    assert middle_band(4, (0.0, 1.0)) == [0, 1, 2, 3]


@pytest.mark.parametrize("band", [(0.7, 0.3), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.2)])
def test_middle_band_rejects_bad_fractions(band):
    with pytest.raises(ValueError, match="0 <= lo < hi <= 1"):
        middle_band(32, band)


@pytest.mark.parametrize(
    ("n_layers", "band", "expected"),
    [
        (4, (0.3, 0.7), [2]),
        (2, (0.3, 0.4), [0]),
        (6, (0.5, 0.55), [3]),
        (100, (0.001, 0.005), [0]),
        (1, (0.3, 0.7), [0]),
    ],
)
def test_a_band_that_holds_no_layer_falls_back_to_its_middle_layer(n_layers, band, expected):
    """The default band of a 4-layer model used to hold no layer and stop the build."""
    assert middle_band(n_layers, band) == expected


@pytest.mark.parametrize("n_layers", [0, -3, 2.5, True])
def test_middle_band_rejects_bad_layer_counts(n_layers):
    with pytest.raises(ValueError, match="positive integer"):
        middle_band(n_layers)


def test_bridge_scores_average_the_band_layers_each_candidate_has():
    layer_scores = {
        "en": {9: 100.0, 10: 0.2, 11: 0.4, 22: 100.0},
        "fr": {12: 0.3},
        "ja": {3: 0.9, 25: 0.9},  # no band layer
    }
    scores = bridge_scores(layer_scores, range(10, 22))
    assert scores == pytest.approx({"en": 0.3, "fr": 0.3})
    assert "ja" not in scores


def test_selection_probabilities_are_a_softmax_of_z_scores():
    probs = selection_probabilities({"en": 1.0, "fr": 3.0})
    # z = -1, +1
    assert probs["fr"] == pytest.approx(math.e / (math.e + 1 / math.e))
    assert sum(probs.values()) == pytest.approx(1.0)


def test_selection_probabilities_do_not_depend_on_the_score_scale():
    a = selection_probabilities({"en": 0.01, "fr": 0.02, "id": 0.05})
    b = selection_probabilities({"en": 10.0, "fr": 20.0, "id": 50.0})
    assert a == pytest.approx(b)


def test_lower_temperature_sharpens_the_choice():
    scores = {"en": 0.1, "fr": 0.2, "id": 0.4}
    assert selection_probabilities(scores, 0.1)["id"] > selection_probabilities(scores, 1.0)["id"]
    assert selection_probabilities(scores, 1.0)["id"] > selection_probabilities(scores, 10.0)["id"]


def test_single_candidate_is_certain_and_equal_scores_are_uniform():
    assert selection_probabilities({"en": 0.7}) == {"en": 1.0}
    assert selection_probabilities({"en": 0.5, "fr": 0.5, "id": 0.5}) == pytest.approx(
        {"en": 1 / 3, "fr": 1 / 3, "id": 1 / 3}
    )
    assert selection_probabilities({}) == {}


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_non_positive_temperature_is_rejected(temperature):
    with pytest.raises(ValueError, match="temperature"):
        selection_probabilities({"en": 1.0}, temperature)


def test_rank_bridges_puts_the_best_first_and_breaks_ties_by_code():
    scores = {"id": 0.2, "fr": 0.5, "en": 0.5, "ja": 0.1}
    ranked = rank_bridges(scores, selection_probabilities(scores))
    assert [(r.bridge, r.rank) for r in ranked] == [("en", 1), ("fr", 2), ("id", 3), ("ja", 4)]
    assert ranked[0].probability == pytest.approx(ranked[1].probability)
    assert ranked[0].probability > ranked[2].probability > ranked[3].probability
    assert ranked[2] == RankedBridge("id", 0.2, ranked[2].probability, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranked[0].rank = 5  # type: ignore[misc]


def test_rank_bridges_needs_the_same_candidates():
    with pytest.raises(ValueError, match="same candidates"):
        rank_bridges({"en": 1.0}, {"fr": 1.0})
