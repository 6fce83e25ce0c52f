"""Gold demonstrations: concepts (CLDR), triangulation (MUSE), probe split only, no copies, stable."""

from __future__ import annotations

import random

from serve_support import write_index

from bridgex_serve.demonstrations import Lexicon
from bridgex_serve.index import CATEGORY_PREFERENCE, load_index


def muse(a: str, b: str, pairs: list[tuple[str, str]], split: str = "probe") -> list[tuple]:
    """MUSE-style rows (no concept) of pair (a, b), stored with a < b as the builder stores them."""
    if a > b:
        return [(b, a, wb, wa, None, None, split) for wa, wb in pairs]
    return [(a, b, wa, wb, None, None, split) for wa, wb in pairs]


# sw → en → he with one clean word, one word whose translations disagree, a held-out word and a copy
MUSE_ROWS = [
    *muse("sw", "en", [("kitabu", "book"), ("moto", "fire"), ("moto", "engine"), ("mbwa", "dog")]),
    *muse("sw", "en", [("redio", "radio")]),
    *muse("en", "he", [("book", "ספר"), ("fire", "אש"), ("engine", "מנוע"), ("dog", "כלב")]),
    *muse("en", "he", [("radio", "רדיו")]),
    # sw-he: moto is only an engine here, so (moto, fire, אש) is no triangle; mbwa is a test word
    *muse("sw", "he", [("kitabu", "ספר"), ("moto", "מנוע"), ("redio", "רדיו")]),
    *muse("sw", "he", [("mbwa", "כלב")], split="test"),
]


def cldr(concept: str, category: str, words: dict[str, str], split: str = "probe") -> list[tuple]:
    codes = sorted(words)
    return [
        (a, b, words[a], words[b], concept, category, split)
        for i, a in enumerate(codes)
        for b in codes[i + 1 :]
    ]


def test_concepts_align_words_across_any_languages_in_category_order():
    rows = [
        *cldr("territory:KE", "territory", {"sw": "Kenya", "en": "Kenya", "he": "קניה"}),
        *cldr("month:1", "month", {"sw": "Januari", "en": "January", "he": "ינואר"}),
        *cldr("unit:meter", "unit", {"sw": "mita", "en": "meter", "he": "מטר"}),
    ]
    lex = Lexicon(rows, CATEGORY_PREFERENCE)
    assert lex.select(("sw", "en", "he"), 5) == (("mita", "meter", "מטר"), ("Januari", "January", "ינואר"))
    # Kenya/Kenya is a copy in the bridged triple, but a fine direct sw → he demonstration
    assert ("Kenya", "קניה") in lex.select(("sw", "he"), 5)


def test_a_concept_with_two_words_in_a_language_is_not_used_for_that_language():
    rows = [
        *cldr("unit:hour", "unit", {"sw": "saa", "en": "hour", "he": "שעה"}),
        ("en", "sw", "hour", "masaa", "unit:hour", "unit", "probe"),  # a second sw word for the concept
    ]
    lex = Lexicon(rows, CATEGORY_PREFERENCE)
    assert lex.select(("sw", "en", "he"), 3) == ()
    assert lex.select(("en", "he"), 3) == (("hour", "שעה"),)


def test_muse_triangles_need_all_three_entries_and_conflicts_make_no_demonstration():
    lex = Lexicon(MUSE_ROWS)
    demos = lex.select(("sw", "en", "he"), 10)
    assert demos == (("redio", "radio", "רדיו"), ("kitabu", "book", "ספר"), ("moto", "engine", "מנוע"))
    # (moto, fire, אש): sw-en and en-he agree but sw-he says moto is מנוע: not mutual translations
    assert ("moto", "fire", "אש") not in demos
    # every pair of words in every demonstration is a probe entry
    probe = {frozenset(((r[0], r[2]), (r[1], r[3]))) for r in MUSE_ROWS if r[6] == "probe"}
    langs = ("sw", "en", "he")
    for d in demos:
        for i in range(3):
            for j in range(i + 1, 3):
                assert frozenset(((langs[i], d[i]), (langs[j], d[j]))) in probe


def test_unambiguous_triangles_come_before_ambiguous_ones():
    lex = Lexicon(MUSE_ROWS)
    assert lex.select(("sw", "en", "he"), 3)[-1] == ("moto", "engine", "מנוע")  # moto has two English words


def test_test_words_are_never_demonstrations_in_any_pair():
    lex = Lexicon(MUSE_ROWS)
    every = {
        w
        for langs in (("sw", "en", "he"), ("sw", "en"), ("en", "he"))
        for d in lex.select(langs, 10)
        for w in d
    }
    assert "mbwa" not in every and "כלב" not in every
    assert "dog" not in every  # its entries pair it with held-out words
    assert "fire" in every  # sw-en and en-he agree on it, so it serves those pairs directly
    rows = [*MUSE_ROWS, *cldr("month:3", "month", {"sw": "Machi", "en": "March", "he": "מרץ"}, split="test")]
    assert "Machi" not in {w for d in Lexicon(rows).select(("sw", "en", "he"), 10) for w in d}


def test_copies_are_never_demonstrations():
    rows = [
        *muse("sw", "en", [("hoteli", "hotel"), ("simu", "phone")]),
        *muse("en", "de", [("hotel", "Hotel"), ("phone", "Telefon")]),
        *muse("sw", "de", [("hoteli", "Hotel"), ("simu", "Telefon")]),
    ]
    assert Lexicon(rows).select(("sw", "en", "de"), 5) == (("simu", "phone", "Telefon"),)


def test_selection_is_deterministic_whatever_the_row_order():
    shuffled = list(MUSE_ROWS)
    random.Random(7).shuffle(shuffled)
    assert Lexicon(shuffled).select(("sw", "en", "he"), 3) == Lexicon(MUSE_ROWS).select(("sw", "en", "he"), 3)


def test_the_index_serves_muse_triangles_cached_and_without_the_query_word(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb", concepts={}, entries=MUSE_ROWS))
    demos = index.demonstrations(("sw", "en", "he"), 2)
    assert demos == (("redio", "radio", "רדיו"), ("kitabu", "book", "ספר"))
    assert index._demo_cache[(("sw", "en", "he"), 2)]  # computed once per (languages, k)
    assert index.demonstrations(("sw", "en", "he"), 2, exclude="Kitabu") == (
        ("redio", "radio", "רדיו"),
        ("moto", "engine", "מנוע"),
    )
    assert len(index.demonstrations(("sw", "he"), 5)) == 3
