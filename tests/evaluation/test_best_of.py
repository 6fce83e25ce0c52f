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
