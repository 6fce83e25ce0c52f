import pytest
from sacrebleu.metrics import BLEU, CHRF

from bridgex_index.words import normalise_word
from index_builder.evaluation import sentence_scoring as ss

REFERENCES = [
    "The cat sat on the mat.",
    "Please enter a valid email address.",
    "This field is required.",
    "Your password has been changed successfully.",
]
ANSWERS = [
    "The cat is sitting on the mat.",
    "Enter a valid e-mail address, please.",
    "This field is needed.",
    "Password changed.",
]


def test_chrf_plus_plus_equals_sacrebleus_own_corpus_score():
    expected = CHRF(word_order=2).corpus_score(ANSWERS, [REFERENCES]).score
    assert ss.corpus_score(ss.CHRF_PP, ANSWERS, REFERENCES, "en") == pytest.approx(expected, abs=1e-9)
    assert 0 < expected < 100


@pytest.mark.parametrize(("target", "tokenize"), [("en", "13a"), ("zh", "zh"), ("ja", "char")])
def test_bleu_equals_sacrebleus_own_with_the_targets_tokenizer(target, tokenize):
    answers = (
        ANSWERS
        if target == "en"
        else ["我爱北京天安门。", "请输入有效的电子邮件地址", "此字段为必填项。", "密码已更改"]
    )
    references = (
        REFERENCES
        if target == "en"
        else [
            "我爱北京天安门。",
            "请输入一个有效的电子邮件地址。",
            "这个字段是必填项。",
            "你的密码已成功更改。",
        ]
    )
    expected = BLEU(tokenize=tokenize).corpus_score(answers, [references]).score
    assert ss.corpus_score(ss.BLEU_METRIC, answers, references, target) == pytest.approx(expected, abs=1e-9)
    assert tokenize in ss.signature(ss.BLEU_METRIC, target)


def test_perfect_answers_score_100():
    assert ss.corpus_score(ss.CHRF_PP, REFERENCES, REFERENCES, "en") == pytest.approx(100.0)


def test_unknown_metric_and_mismatched_lengths_are_errors():
    with pytest.raises(ValueError, match="unknown metric 'meteor'"):
        ss.corpus_score("meteor", ANSWERS, REFERENCES, "en")
    with pytest.raises(ValueError, match="3 answers for 4 references"):
        ss.corpus_score(ss.CHRF_PP, ANSWERS[:3], REFERENCES, "en")
    with pytest.raises(ValueError, match="no sentences"):
        ss.corpus_score(ss.CHRF_PP, [], [], "en")


def _planted(n: int = 40) -> tuple[list[str], list[str], list[str]]:
    """References, a strategy right on 3/4 of them and a direct route right on 1/4 (otherwise unrelated)."""
    references = [f"sentence number {i} says the river {i % 7} is wide today" for i in range(n)]
    wrong = [f"zzz qqq {i}" for i in range(n)]
    strategy = [r if i % 4 != 0 else w for i, (r, w) in enumerate(zip(references, wrong, strict=True))]
    direct = [r if i % 4 == 0 else w for i, (r, w) in enumerate(zip(references, wrong, strict=True))]
    return references, strategy, direct


def test_bootstrap_finds_a_planted_difference():
    references, strategy, direct = _planted()
    result = ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=300)
    assert result.n == 40
    assert result.delta == pytest.approx(result.score - result.direct)
    assert result.delta > 20
    assert 0 < result.low < result.delta < result.high
    assert result.significant
    reverse = ss.paired_bootstrap(ss.CHRF_PP, direct, strategy, references, "en", n_boot=300)
    assert reverse.high < 0 and reverse.significant


def test_bootstrap_resamples_the_same_sentences_for_both_sides():
    # identical systems differ by exactly zero in every resample only if both use the same indices
    references, strategy, _ = _planted()
    result = ss.paired_bootstrap(ss.BLEU_METRIC, strategy, list(strategy), references, "en", n_boot=200)
    assert (result.delta, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.significant


def test_bootstrap_is_deterministic_for_a_seed():
    references, strategy, direct = _planted(12)
    first = ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=100, seed=7)
    again = ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=100, seed=7)
    assert first == again
    with pytest.raises(ValueError, match="n_boot must be at least 1"):
        ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=0)


def test_diagnostics_count_empty_copies_and_wrong_language():
    sources = ["Habari ya asubuhi", "Asante sana", "Karibu", "Hifadhi", "OK Google", "Nenda nyumbani"]
    references = ["Bonjour", "Merci beaucoup", "Bienvenue", "Enregistrer", "OK Google", "Rentre à la maison"]
    answers = [
        "Bonjour",  # right
        "  ",  # empty
        '"Karibu"',  # a quoted copy of the source
        "Save",  # English, not French
        "OK Google",  # same as the source, but so is the reference: not a copy
        "???",  # punctuation only: empty after normalisation
    ]
    languages = {"bonjour": "fr", "save": "en", "karibu": "sw", "ok google": None}

    def detect(text: str) -> str | None:
        return languages.get(normalise_word(text))

    d = ss.diagnose(sources, answers, references, "fr", normalise_word, detect)
    assert (d.n, d.empty, d.copies, d.wrong_language, d.undetected) == (6, 2, 1, 2, 1)
    assert d.rates()["empty"] == pytest.approx(100 * 2 / 6)
    expected_ratio = sum(len(a.strip()) for a in answers) / sum(len(r) for r in references)
    assert d.length_ratio == pytest.approx(expected_ratio)


def test_diagnostics_without_a_detector_count_no_language():
    d = ss.diagnose(["a b"], ["x y"], ["x y"], "fr", normalise_word)
    assert (d.wrong_language, d.undetected, d.copies, d.empty) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="as many sources, answers and references"):
        ss.diagnose(["a"], ["b", "c"], ["d"], "fr", normalise_word)


def test_score_strategies_compares_every_strategy_with_direct_on_the_same_sentences():
    references, strategy, direct = _planted(20)
    sources = [f"chanzo {i}" for i in range(20)]
    rows = ss.score_strategies(
        sources, references, {"direct": direct, "english": strategy}, "en", normalise_word, n_boot=100
    )
    by_name = {row.strategy: row for row in rows}
    assert by_name["direct"].vs_direct == {}
    english = by_name["english"]
    assert set(english.scores) == set(english.vs_direct) == {ss.CHRF_PP, ss.BLEU_METRIC}
    assert english.scores[ss.CHRF_PP] == pytest.approx(
        ss.corpus_score(ss.CHRF_PP, strategy, references, "en")
    )
    comparison = english.vs_direct[ss.CHRF_PP]
    assert comparison.direct == pytest.approx(by_name["direct"].scores[ss.CHRF_PP])
    assert comparison.significant and comparison.delta > 0
    assert english.diagnostics.n == 20 and english.diagnostics.empty == 0
    with pytest.raises(ValueError, match="19 answers for 20 references"):
        ss.score_strategies(sources, references, {"direct": direct[:19]}, "en", normalise_word)


def test_sentence_scores_are_sacrebleus_sentence_scores():
    expected = [
        CHRF(word_order=2).sentence_score(a, [r]).score for a, r in zip(ANSWERS, REFERENCES, strict=True)
    ]
    assert ss.sentence_scores(ss.CHRF_PP, ANSWERS, REFERENCES, "en") == pytest.approx(expected, abs=1e-9)


def test_mean_bootstrap_of_one_group_is_the_paired_bootstrap():
    references, strategy, direct = _planted()
    one = ss.paired_bootstrap_mean(ss.CHRF_PP, [(strategy, direct, references, "en")], n_boot=200, seed=3)
    assert one == ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=200, seed=3)


def test_mean_bootstrap_averages_the_groups_and_resamples_each_within_itself():
    references, strategy, direct = _planted()
    alone = ss.paired_bootstrap(ss.CHRF_PP, strategy, direct, references, "en", n_boot=200, seed=3)
    # a second group whose two sides are the same: it adds 0 to every resample, so everything halves
    same = (REFERENCES, REFERENCES, REFERENCES, "en")
    both = ss.paired_bootstrap_mean(
        ss.CHRF_PP, [(strategy, direct, references, "en"), same], n_boot=200, seed=3
    )
    assert both.n == len(references) + len(REFERENCES)
    assert both.score == pytest.approx((alone.score + 100.0) / 2)
    assert both.delta == pytest.approx(alone.delta / 2)
    assert (both.low, both.high) == pytest.approx((alone.low / 2, alone.high / 2))
    with pytest.raises(ValueError, match="no groups"):
        ss.paired_bootstrap_mean(ss.CHRF_PP, [])
