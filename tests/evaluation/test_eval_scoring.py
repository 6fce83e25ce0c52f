"""BLI scoring on hand-made cases: normalisation (scripts, marks, quotes, NFC), hits, rank correlation and
the per-pair / overall summaries the report prints."""

from __future__ import annotations

import unicodedata

import pytest
from scipy.stats import spearmanr

from index_builder.evaluation.scoring import (
    Candidate,
    PairSummary,
    average_ranks,
    gold_sets,
    is_hit,
    normalise,
    overall,
    paired_bootstrap,
    spearman,
)

# ------------------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("Water", "water"),
        ("WASSER", "Wasser"),
        ('"maji"', "maji"),
        ("'maji'", "maji"),
        ("  maji.  ", "maji"),
        ("«eau»", "eau"),
        ("„Wasser“", "Wasser"),
        ("“water”!", "water"),
        ("(maji)", "maji"),
        ("Straße", "STRASSE"),  # case-folding, as MUSE lower-cases
        ("jumapili,", "Jumapili"),
    ],
)
def test_case_quotes_and_surrounding_punctuation_do_not_matter(answer, gold):
    assert is_hit(answer, [gold])


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("café", "cafe"),  # Latin accents are part of the word (MUSE keeps them)
        ("maji", "mají"),
        ("water bottle", "water"),
        ("wa-ter", "water"),  # inner punctuation is kept
        ("", ""),  # an empty answer never hits
        ('""', '""'),
    ],
)
def test_misses(answer, gold):
    assert not is_hit(answer, [gold])


def test_any_of_several_gold_translations_is_a_hit():
    golds = ["Monday", "Mon.", "monday"]
    assert is_hit("Mon", golds)
    assert is_hit("MONDAY", golds)
    assert not is_hit("Sunday", golds)
    assert not is_hit("Monday", [])


def test_hebrew_points_and_cantillation_are_dropped():
    pointed = "מַיִם"  # water, with niqqud
    assert normalise(pointed) == "מים"
    assert is_hit(pointed, ["מים"])
    assert is_hit("שָׁלוֹם", ["שלום"])  # shin dot, qamats, holam
    assert is_hit("בְּרֵאשִׁ֖ית", ["בראשית"])  # a cantillation mark too
    assert is_hit("יום־שני", ["יום־שני"])  # maqaf (Hebrew hyphen) is kept, not stripped
    assert not is_hit("יום שני", ["יום־שני"])


def test_hebrew_presentation_forms_normalise_to_plain_letters():
    # U+FB2A (shin with shin dot) is a composition exclusion: NFC decomposes it, the point is dropped.
    assert normalise("\ufb2aלום") == "שלום"


def test_arabic_harakat_tatweel_and_superscript_alef_are_dropped():
    assert is_hit("مَاءٌ", ["ماء"])  # water, with fatha and dammatan
    assert is_hit("كِتَابٌ", ["كتاب"])
    assert is_hit("كـتـاب", ["كتاب"])  # tatweel (kashida)
    assert is_hit("هٰذا", ["هذا"])  # superscript alef
    assert not is_hit("كتب", ["كتاب"])


def test_rtl_answers_with_quotes_and_punctuation():
    assert is_hit("«ماء»", ["ماء"])
    assert is_hit("\u200fמים.", ["מים"])  # a right-to-left mark and a full stop at the edges
    assert is_hit('"עברית"', ["עברית"])


def test_cjk_with_brackets_and_ideographic_punctuation():
    assert is_hit("「月曜日」", ["月曜日"])
    assert is_hit("『水』", ["水"])
    assert is_hit("水。", ["水"])
    assert is_hit("　水　", ["水"])  # ideographic spaces
    assert is_hit("一月", ["1月", "一月"])
    assert not is_hit("火曜日", ["月曜日"])
    assert not is_hit("水曜", ["水曜日"])


def test_nfc_and_nfd_spellings_are_equal():
    nfc = unicodedata.normalize("NFC", "Curaçao")
    nfd = unicodedata.normalize("NFD", "Curaçao")
    assert nfc != nfd
    assert is_hit(nfd, [nfc])
    assert is_hit(unicodedata.normalize("NFD", "Montréal"), ["montréal"])
    assert normalise(nfd) == unicodedata.normalize("NFC", "curaçao")


def test_inner_whitespace_is_collapsed():
    assert normalise("  New \t  York ") == "new york"


def test_gold_sets_keep_every_translation_once_in_order():
    entries = [("maji", "water"), ("mbwa", "dog"), ("maji", "waters"), ("maji", "water")]
    assert gold_sets(entries) == {"maji": ("water", "waters"), "mbwa": ("dog",)}


# ------------------------------------------------------------------------------------------ correlations


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.5, 0.3, 0.2], [10.0, 40.0, 0.0]),
        ([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]),
        ([0.1, 0.2, 0.3, 0.4], [4.0, 3.0, 2.0, 1.0]),
        ([0.4, 0.1, 0.3, 0.2, 0.0], [5.0, 5.0, 0.0, 2.5, 2.5]),
    ],
)
def test_spearman_matches_scipy(x, y):
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_spearman_is_undefined_for_constant_or_short_inputs():
    assert spearman([0.5, 0.3, 0.2], [0.0, 0.0, 0.0]) is None
    assert spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]) is None
    assert spearman([0.5, 0.3], [1.0, 2.0]) is None
    with pytest.raises(ValueError, match="equal length"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


# ------------------------------------------------------------------------------------------- summaries


def _pair(direct, english, chosen, accs: dict[str, float], probs: dict[str, float]) -> PairSummary:
    ranked = sorted(probs, key=lambda b: -probs[b])
    cands = tuple(Candidate(b, probs[b], ranked.index(b) + 1, accs[b]) for b in ranked)
    return PairSummary("sw", "he", 40, direct, english, chosen, accs[chosen], cands, shots=3)


def test_oracle_chosen_rank_and_rho_of_a_pair():
    p = _pair(10.0, 20.0, "de", {"de": 30.0, "en": 20.0, "fr": 40.0}, {"de": 0.5, "en": 0.3, "fr": 0.2})
    assert p.oracle.bridge == "fr"
    assert p.oracle_decided
    assert p.chosen_is_oracle is False
    assert p.chosen_measured_rank == 2
    assert p.candidate_mean == pytest.approx(30.0)
    assert p.rho == pytest.approx(spearmanr([0.5, 0.3, 0.2], [30.0, 20.0, 40.0]).statistic)


def test_a_tie_for_the_best_counts_the_chosen_bridge_as_oracle():
    p = _pair(0.0, 5.0, "en", {"de": 5.0, "en": 5.0, "fr": 0.0}, {"de": 0.2, "en": 0.5, "fr": 0.3})
    assert p.chosen_is_oracle is True
    assert p.oracle.bridge == "en"  # tie broken by the index's rank
    assert p.chosen_measured_rank == 1


def test_all_candidates_equal_decides_nothing():
    p = _pair(0.0, 0.0, "en", {"de": 0.0, "en": 0.0, "fr": 0.0}, {"de": 0.2, "en": 0.5, "fr": 0.3})
    assert not p.oracle_decided
    assert p.chosen_is_oracle is None
    assert p.rho is None
    o = overall([p])
    assert o.oracle_known == 0 and o.oracle_bridges == {} and o.candidate_pairs == 1


def test_overall_gains_are_means_of_per_pair_differences():
    a = _pair(10.0, 20.0, "de", {"de": 30.0, "en": 20.0, "fr": 40.0}, {"de": 0.5, "en": 0.3, "fr": 0.2})
    b = _pair(0.0, None, "en", {"de": 5.0, "en": 15.0, "fr": 0.0}, {"de": 0.2, "en": 0.5, "fr": 0.3})
    o = overall([a, b])
    assert o.pairs == 2
    assert o.direct == pytest.approx(5.0)
    assert o.english == pytest.approx(20.0)  # only the pair that has it
    assert o.bridgex == pytest.approx(22.5)
    assert o.gain_over_direct == pytest.approx(((30 - 10) + (15 - 0)) / 2)
    assert o.gain_over_english == pytest.approx(30 - 20)
    assert o.oracle == pytest.approx((40 + 15) / 2)
    assert (o.chosen_is_oracle, o.oracle_known) == (1, 2)
    assert o.oracle_bridges == {"en": 1, "fr": 1}
    assert o.rho_defined == 2
    assert o.chosen_ranks == (1, 2)


def test_overall_of_no_measurements():
    p = PairSummary("sw", "he", 5, 10.0, None, None, None)
    o = overall([p])
    assert o.bridgex is None and o.gain_over_direct is None and o.mean_rho is None
    assert o.oracle_known == 0 and o.candidate_pairs == 0


def test_paired_bootstrap_mean_and_interval():
    a = [True] * 30 + [False] * 70
    b = [False] * 20 + [True] * 10 + [False] * 70  # a wins 20 items, ties elsewhere
    mean, low, high = paired_bootstrap(a, b, n_boot=1000)
    assert mean == pytest.approx(20.0)
    assert 10.0 < low < mean < high < 30.0
    assert paired_bootstrap(a, b, n_boot=1000) == (mean, low, high)  # fixed seed
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    assert paired_bootstrap([], []) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap([True], [])
