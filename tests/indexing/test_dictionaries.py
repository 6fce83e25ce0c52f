import os
import subprocess
import sys
from pathlib import Path

import pytest
from babel import Locale

from index_builder.indexing.dictionaries import (
    CLDR_CATEGORIES,
    DictionaryError,
    Entry,
    PairDictionary,
    cldr_category_counts,
    cldr_dictionaries,
    load_muse_dir,
    read_muse,
    split_entries,
)
from index_builder.indexing.languages import UnknownLanguageError


def _write(directory: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = directory / name
    path.write_text(text, encoding=encoding)
    return path


def _pairs(d: PairDictionary) -> list[tuple[str, str]]:
    return [(e.source_word, e.target_word) for e in d.entries]


# ---------------------------------------------------------------------------------------------- read_muse


def test_read_muse_keeps_several_translations_per_word(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "dog mbwa\ndog kelb\ncat paka\n")
    d = read_muse(path, "en", "sw")
    assert (d.source, d.target) == ("en", "sw")
    assert _pairs(d) == [("dog", "mbwa"), ("dog", "kelb"), ("cat", "paka")]
    assert str(path) in d.origin


def test_tabs_spaces_blank_lines_and_crlf_are_accepted(tmp_path):
    path = _write(tmp_path, "en-he.txt", "dog\tכלב\r\n\r\n  cat   חתול  \n\n")
    assert _pairs(read_muse(path, "en", "he")) == [("dog", "כלב"), ("cat", "חתול")]


def test_identical_pairs_are_kept_once(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "dog mbwa\ncat paka\ndog\tmbwa\n")
    assert _pairs(read_muse(path, "en", "sw")) == [("dog", "mbwa"), ("cat", "paka")]


def test_bom_is_stripped(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "dog mbwa\n", encoding="utf-8-sig")
    assert _pairs(read_muse(path, "en", "sw")) == [("dog", "mbwa")]


def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "dog mbwa\n\ncat\n")
    with pytest.raises(DictionaryError) as info:
        read_muse(path, "en", "sw")
    assert str(info.value) == f"{path}:3: expected 'source_word target_word', got 'cat'"


def test_line_with_three_fields_is_malformed(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "dog mbwa\nNew York New-York\n")
    with pytest.raises(DictionaryError, match=r"en-sw\.txt:2: .*'New York New-York'"):
        read_muse(path, "en", "sw")


def test_non_utf8_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "fr-sw.txt"
    path.write_bytes("café kahawa\n".encode("latin-1"))
    with pytest.raises(DictionaryError, match=r"fr-sw\.txt: not UTF-8"):
        read_muse(path, "fr", "sw")


def test_file_without_entries_is_an_error(tmp_path):
    path = _write(tmp_path, "en-sw.txt", "\n\n")
    with pytest.raises(DictionaryError, match="no entries"):
        read_muse(path, "en", "sw")


def test_reversed_dictionary_swaps_languages_and_words():
    d = PairDictionary("en", "sw", [Entry("month", "mwezi", "unit:duration-month", "unit")], "cldr")
    r = d.reversed()
    assert (r.source, r.target, r.origin) == ("sw", "en", "cldr")
    assert r.entries == [Entry("mwezi", "month", "unit:duration-month", "unit")]
    assert r.reversed() == d


# ------------------------------------------------------------------------------------------ load_muse_dir


def test_load_muse_dir_reads_either_file_order_and_orients_a_to_b(tmp_path):
    _write(tmp_path, "en-sw.txt", "dog mbwa\n")
    _write(tmp_path, "sw-he.txt", "mbwa כלב\npaka חתול\n")
    result = load_muse_dir(tmp_path, ["sw", "en", "he"])
    assert set(result) == {("en", "sw"), ("he", "sw")}
    he_sw = result[("he", "sw")]
    assert (he_sw.source, he_sw.target) == ("he", "sw")
    assert _pairs(he_sw) == [("כלב", "mbwa"), ("חתול", "paka")]
    assert _pairs(result[("en", "sw")]) == [("dog", "mbwa")]


def test_both_file_orders_are_merged(tmp_path):
    _write(tmp_path, "en-sw.txt", "dog mbwa\ncat paka\n")
    _write(tmp_path, "sw-en.txt", "mbwa dog\nnyumba house\n")
    result = load_muse_dir(tmp_path, ["en", "sw"])
    assert _pairs(result[("en", "sw")]) == [("dog", "mbwa"), ("cat", "paka"), ("house", "nyumba")]
    assert "en-sw.txt" in result[("en", "sw")].origin
    assert "sw-en.txt" in result[("en", "sw")].origin


def test_pair_without_a_file_is_absent(tmp_path):
    _write(tmp_path, "en-sw.txt", "dog mbwa\n")
    _write(tmp_path, "en-he.txt", "dog כלב\n")
    _write(tmp_path, "en-fi.txt", "dog koira\n")  # not asked for
    assert set(load_muse_dir(tmp_path, ["en", "sw", "he"])) == {("en", "sw"), ("en", "he")}


def test_language_in_no_file_names_language_and_expected_files(tmp_path):
    _write(tmp_path, "en-sw.txt", "dog mbwa\n")
    with pytest.raises(DictionaryError) as info:
        load_muse_dir(tmp_path, ["en", "sw", "he"])
    message = str(info.value)
    assert "'he'" in message
    for name in ("en-he.txt", "he-en.txt", "he-sw.txt", "sw-he.txt"):
        assert name in message


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(DictionaryError, match="no-such-dir"):
        load_muse_dir(tmp_path / "no-such-dir", ["en", "sw"])


def test_malformed_file_in_directory_names_file_and_line(tmp_path):
    path = _write(tmp_path, "sw-en.txt", "mbwa dog\nmbwa\n")
    with pytest.raises(DictionaryError, match=f"{path}:2:"):
        load_muse_dir(tmp_path, ["en", "sw"])


# ---------------------------------------------------------------------------------------------------- CLDR

LANGS = ["en", "de", "fr", "es", "it", "pt", "id", "ar", "he", "ja", "zh", "sw", "fi", "hu"]


@pytest.fixture(scope="module")
def cldr():
    return cldr_dictionaries(LANGS)


def _by_concept(d: PairDictionary) -> dict[str, Entry]:
    return {e.concept: e for e in d.entries}


def test_cldr_months_weekdays_and_units_are_aligned_by_concept(cldr):
    en_sw = _by_concept(cldr[("en", "sw")])
    assert en_sw["month:1"] == Entry("January", "Januari", "month:1", "month")
    assert en_sw["weekday:0"] == Entry("Monday", "Jumatatu", "weekday:0", "weekday")
    assert en_sw["unit:length-meter"] == Entry("meter", "mita", "unit:length-meter", "unit")
    assert en_sw["language:ar"] == Entry("Arabic", "Kiarabu", "language:ar", "language")
    assert en_sw["territory:DE"] == Entry("Germany", "Ujerumani", "territory:DE", "territory")


def test_cldr_units_are_found_where_babel_gives_no_unit_name(cldr):
    # babel.units.get_unit_name("length-meter", length="long", locale="sw") is None
    assert _by_concept(cldr[("he", "sw")])["unit:length-meter"].source_word == "מטר"
    assert _by_concept(cldr[("de", "ja")])["unit:length-meter"].target_word == "メートル"


def test_cldr_months_use_format_names_even_after_stand_alone_names_leaked():
    for code in ("ja", "zh", "sw"):
        dict(Locale(code).months["stand-alone"]["wide"])  # babel#1234: this leaks 1月 into sw
    d = cldr_dictionaries(["en", "sw"], categories=("month",))[("en", "sw")]
    assert [e.target_word for e in d.entries][:3] == ["Januari", "Februari", "Machi"]


def test_cldr_keeps_cldr_casing(cldr):
    de_en = _by_concept(cldr[("de", "en")])
    assert (de_en["unit:duration-hour"].source_word, de_en["unit:duration-hour"].target_word) == (
        "Stunde",
        "hour",
    )
    assert _by_concept(cldr[("en", "fr")])["month:1"].target_word == "janvier"


def test_cldr_entries_are_single_words_that_are_not_copies(cldr):
    for d in cldr.values():
        for e in d.entries:
            assert not any(c.isspace() for c in e.source_word + e.target_word), e
            assert e.source_word.casefold() != e.target_word.casefold(), e
    en_sw = _by_concept(cldr[("en", "sw")])
    assert "territory:KE" not in en_sw  # Kenya / Kenya
    assert "territory:CW" not in en_sw  # Curaçao / Curacao
    assert "territory:US" not in en_sw  # "United States" is two words


def test_multi_word_names_are_dropped(cldr):
    # Hebrew weekdays are two words (יום שני), so he-sw has none.
    assert cldr_category_counts([cldr[("he", "sw")]]).get("weekday", 0) == 0
    assert cldr_category_counts([cldr[("en", "sw")]])["weekday"] == 7


def test_cldr_unit_symbols_are_not_words(cldr):
    units = [e for d in cldr.values() for e in d.entries if e.category == "unit"]
    assert units
    for e in units:
        assert e.source_word.casefold() not in {"m", "kg", "px", "ppm", "g", "em"}, e


def test_cldr_covers_every_pair_of_many_languages(cldr):
    assert set(cldr) == {(a, b) for a in LANGS for b in LANGS if a < b}
    for (a, b), d in cldr.items():
        assert (d.source, d.target) == (a, b)
        assert len(d.entries) >= 300, (a, b)
        assert all(e.concept and e.category in CLDR_CATEGORIES for e in d.entries)
        assert all(e.concept.startswith(f"{e.category}:") for e in d.entries)
        assert len(set(_pairs(d))) == len(d.entries)


def test_cldr_category_counts_add_up(cldr):
    counts = cldr_category_counts(cldr)
    assert set(counts) == set(CLDR_CATEGORIES)
    assert sum(counts.values()) == sum(len(d.entries) for d in cldr.values())
    en_sw = cldr_category_counts({("en", "sw"): cldr[("en", "sw")]})
    assert en_sw["month"] == 12
    assert en_sw["unit"] > 50


def test_cldr_categories_restrict_the_entries():
    result = cldr_dictionaries(["sw", "en", "he"], categories=("month", "weekday"))
    assert cldr_category_counts([result[("en", "sw")]]) == {"month": 12, "weekday": 7}
    assert cldr_category_counts([result[("he", "sw")]]) == {"month": 12}


def test_cldr_unknown_language_is_rejected():
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        cldr_dictionaries(["en", "xx"])


def test_cldr_unknown_category_is_rejected():
    with pytest.raises(ValueError, match="planet"):
        cldr_dictionaries(["en", "sw"], categories=("month", "planet"))


# --------------------------------------------------------------------------------------------------- split

WORDS = ["dog", "cat", "house", "water", "fire", "tree", "river", "bread", "milk", "salt"]
WORDS += ["stone", "bird", "fish", "rain", "sun", "moon", "star", "hand", "eye", "road"]


def _muse_like(n_words: int, translations: int = 1) -> PairDictionary:
    entries = [Entry(f"w{i}", f"t{i}_{k}") for i in range(n_words) for k in range(translations)]
    return PairDictionary("en", "sw", entries, "test")


def test_split_is_pinned_so_it_is_the_same_on_every_machine():
    d = PairDictionary("en", "sw", [Entry(w, f"{w}_sw") for w in WORDS], "test")
    probes, test = split_entries(d, test_fraction=0.3)
    assert [e.source_word for e in test] == ["dog", "rain", "sun", "moon", "star", "hand", "eye"]
    assert [e.source_word for e in probes] == [
        *("cat", "house", "water", "fire", "river", "bread", "milk", "salt", "stone", "fish", "road"),
    ]


def test_split_does_not_depend_on_python_hash_seed(tmp_path):
    code = (
        "from index_builder.indexing.dictionaries import PairDictionary, Entry, split_entries\n"
        "d = PairDictionary('en', 'sw', [Entry(f'w{i}', f't{i}') for i in range(300)], 'x')\n"
        "p, t = split_entries(d, 0.2, max_pairs=50)\n"
        "print([e.source_word for e in p], [e.source_word for e in t])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_every_translation_of_a_test_word_is_in_test():
    d = _muse_like(300, translations=3)
    probes, test = split_entries(d, 0.2)
    test_words = {e.source_word for e in test}
    assert test_words
    assert sum(e.source_word in test_words for e in d.entries) == len(test) == 3 * len(test_words)
    assert not {e.source_word for e in probes} & test_words


def test_probe_words_never_appear_in_test_entries():
    entries = [Entry(f"w{i}", f"t{i % 97}") for i in range(400)]  # target words shared by several sources
    d = PairDictionary("en", "sw", entries, "test")
    probes, test = split_entries(d, 0.2)
    assert probes and test
    assert not {e.source_word for e in probes} & {e.source_word for e in test}
    assert not {e.target_word for e in probes} & {e.target_word for e in test}


def test_target_word_held_out_in_its_own_language_is_not_a_probe():
    d = _muse_like(500)
    probes, _ = split_entries(d, 0.2)
    _, test_reversed = split_entries(d.reversed(), 0.2)
    held_out_sw = {e.source_word for e in test_reversed}
    assert held_out_sw
    assert not {e.target_word for e in probes} & held_out_sw


def test_test_fraction_is_roughly_respected():
    d = _muse_like(2000)
    probes, test = split_entries(d, 0.2)
    assert 0.17 < len(test) / 2000 < 0.23
    assert 0.60 < len(probes) / 2000 < 0.70  # 0.8 × 0.8: the target side is held out too


def test_concept_is_the_split_unit_when_present():
    entries = [
        Entry(f"a{i}", f"b{i}_{k}", concept=f"c:{i}", category="c") for i in range(300) for k in range(2)
    ]
    entries += [Entry(f"x{i}", f"y{i}", concept=f"c:{i}", category="c") for i in range(300)]
    d = PairDictionary("en", "sw", entries, "test")
    probes, test = split_entries(d, 0.25)
    test_concepts = {e.concept for e in test}
    assert {e.concept for e in probes}.isdisjoint(test_concepts)
    assert len(test) == 3 * len(test_concepts)


def test_max_pairs_caps_probes_by_hash_order_not_file_order():
    d = _muse_like(500)
    shuffled = PairDictionary("en", "sw", list(reversed(d.entries)), "test")
    probes, test = split_entries(d, 0.2, max_pairs=25)
    probes_shuffled, test_shuffled = split_entries(shuffled, 0.2, max_pairs=25)
    assert len(probes) == 25
    assert set(probes) == set(probes_shuffled)
    assert probes != d.entries[: len(probes)]
    assert set(test) == set(test_shuffled) == set(split_entries(d, 0.2)[1])


def test_max_pairs_larger_than_the_dictionary_keeps_every_probe():
    d = _muse_like(100)
    assert split_entries(d, 0.2, max_pairs=10_000) == split_entries(d, 0.2)


def test_zero_test_fraction_makes_every_entry_a_probe():
    d = _muse_like(50)
    assert split_entries(d, 0.0) == (d.entries, [])


@pytest.mark.parametrize(("fraction", "max_pairs"), [(-0.1, None), (1.5, None), (0.2, -1)])
def test_split_rejects_invalid_arguments(fraction, max_pairs):
    with pytest.raises(ValueError):
        split_entries(_muse_like(10), fraction, max_pairs)


def test_held_out_words_of_other_pairs_are_never_probed():
    d = PairDictionary("en", "sw", [Entry(f"w{i}", f"m{i}") for i in range(40)], "test")
    held = {"en:w3", "sw:m7"}
    probes, _ = split_entries(d, 0.0, None, held)
    used = {f"en:{e.source_word}" for e in probes} | {f"sw:{e.target_word}" for e in probes}
    assert not used & held
    assert len(probes) == 38
