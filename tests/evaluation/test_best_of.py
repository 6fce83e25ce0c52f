import numpy as np
import pytest

from index_builder.evaluation import best_of
from index_builder.evaluation import sentence_scoring as ss

REFERENCES = [
    "Please enter a valid email address.",
    "This field is required.",
    "Your password has been changed.",
    "The file could not be uploaded.",
]
# each route right on a different sentence, unrelated elsewhere
ANSWERS = {
    "direct": ["Please enter a valid email address.", "zzz", "qqq", "Upload failed."],
    "en": ["Enter an email.", "This field is required.", "xxx", "The file was not uploaded."],
    "id": ["www", "Field needed.", "Your password has been changed.", "vvv"],
}


def _points() -> dict[str, np.ndarray]:
    return {r: ss.sentence_scores(ss.CHRF_PP, a, REFERENCES, "en") for r, a in ANSWERS.items()}


def test_oracle_is_at_least_every_candidate_on_every_sentence():
    points = _points()
    choice = best_of.oracle_choice(points)
    assert choice == ["direct", "en", "id", "en"]
    chosen = np.array([points[r][i] for i, r in enumerate(choice)])
    for route in ANSWERS:
        assert (chosen >= points[route]).all()
    oracle = ss.corpus_score(ss.CHRF_PP, best_of.pick(ANSWERS, choice), REFERENCES, "en")
    assert all(oracle > ss.corpus_score(ss.CHRF_PP, a, REFERENCES, "en") for a in ANSWERS.values())


def test_oracle_ties_go_to_the_route_named_first():
    assert best_of.oracle_choice({"direct": [1.0, 0.0, 2.0], "en": [1.0, 3.0, 2.0]}) == [
        "direct",
        "en",
        "direct",
    ]
    assert best_of.oracle_choice({"en": [1.0], "direct": [1.0]}) == ["en"]


def test_consensus_takes_the_answer_the_others_agree_with_and_reads_no_reference():
    answers = {
        "direct": ["zzz qqq xxx", "Das Feld ist erforderlich."],
        "en": ["Bitte eine gültige E-Mail-Adresse eingeben.", "Feld erforderlich."],
        "id": ["Bitte eine gültige E-Mail-Adresse angeben.", "Das Feld ist erforderlich!"],
        "ja": ["Bitte gültige E-Mail-Adresse eingeben.", "Dieses Feld wird benötigt."],
    }
    choice = best_of.consensus_choice(answers)
    assert choice[0] in ("en", "id", "ja")  # never the odd one out
    assert choice[0] == "en"  # the centre of the three close answers
    assert choice[1] in ("direct", "id")


def test_consensus_ties_go_to_direct_first():
    same = {"direct": ["Ce champ est obligatoire."], "en": ["Ce champ est obligatoire."]}
    assert best_of.consensus_choice(same) == ["direct"]
    # two identical answers and an outlier: the first of the identical pair, whatever the outlier's place
    answers = {"direct": ["xyz"], "en": ["Mot de passe modifié."], "de": ["Mot de passe modifié."]}
    assert best_of.consensus_choice(answers) == ["en"]
    assert best_of.consensus_choice({"only": ["a", "b"]}) == ["only", "only"]


def test_candidates_are_direct_english_then_the_index_order():
    assert best_of.candidates(["direct", "en", "id", "ja"], ["id", "ja", "en"]) == ["direct", "en", "id"]
    assert best_of.candidates(["direct", "en", "de"], ["en", "de"]) == ["direct", "en", "de"]
    assert best_of.candidates(["direct", "id", "ja"], ["id", "ja"], limit=2) == ["direct", "id"]


def test_mismatched_or_missing_candidates_are_errors():
    with pytest.raises(ValueError, match="different numbers of items"):
        best_of.oracle_choice({"direct": [1.0], "en": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no candidates"):
        best_of.consensus_choice({})


def test_scored_choice_takes_the_highest_score_ties_to_direct():
    scores = {"direct": [-1.0, -2.0, -0.5], "en": [-0.5, -2.0, -0.7], "id": [-0.9, -3.0, -0.5]}
    assert best_of.scored_choice(scores) == ["en", "direct", "direct"]
    assert best_of.scored_choice({"en": [-1.0], "direct": [-1.0]}) == ["en"]  # the route named first


def test_scored_choice_never_takes_a_flagged_answer_while_a_clean_one_is_there():
    scores = {"direct": [-0.1, -0.1, -0.1], "en": [-2.0, -0.5, -0.9], "id": [-1.0, -0.4, -0.8]}
    flagged = {"direct": [True, True, False], "en": [False, True, True], "id": [True, True, True]}
    # item 0: direct is flagged → en (the only clean one, though it scores lowest)
    # item 1: every answer flagged → the best score among all of them (direct)
    # item 2: en and id flagged → direct
    assert best_of.scored_choice(scores, flagged) == ["en", "direct", "direct"]
    assert best_of.scored_choice(scores, {"direct": [True, False, False]}) == ["id", "direct", "direct"]


def test_scored_choice_treats_a_missing_score_as_the_lowest():
    scores = {"direct": [None, float("nan"), None], "en": [-9.0, -9.0, None]}
    assert best_of.scored_choice(scores) == ["en", "en", "direct"]
    with pytest.raises(ValueError, match="different numbers of items"):
        best_of.scored_choice({"direct": [-1.0]}, {"direct": [False, True]})


def test_span_start_and_mean_logprob_score_the_answer_tokens_only():
    prefix = [5, 6, 7]
    assert best_of.span_start(prefix, [5, 6, 7, 8, 9]) == 3
    assert best_of.span_start(prefix, [5, 6, 70, 9]) == 2  # the last prefix token merged into the answer's
    assert best_of.span_start([], [1, 2]) == 0
    logprobs = [None, -5.0, -5.0, -1.0, -2.0]
    assert best_of.mean_logprob(logprobs, 3) == pytest.approx(-1.5)
    assert best_of.mean_logprob(logprobs, 5) == float("-inf")  # no answer token
    assert best_of.mean_logprob(logprobs, 0) == float("-inf")  # the first token has no log-probability


def test_combined_adds_the_scores_of_the_same_routes():
    forward = {"direct": [-1.0, -2.0], "en": [-0.5, -0.5]}
    back = {"direct": [-1.0, -0.1], "en": [-2.0, -1.0]}
    assert best_of.combined(forward, back) == {"direct": [-2.0, -2.1], "en": [-2.5, -1.5]}
    assert best_of.scored_choice(best_of.combined(forward, back)) == ["direct", "en"]
    with pytest.raises(ValueError, match="different routes"):
        best_of.combined(forward, {"en": [0.0, 0.0], "direct": [0.0, 0.0]})
