import importlib.util
import io
import zipfile
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bridgex_index.words import copy_key
from index_builder.evaluation.testsets import (
    FLORES_CODES,
    TestSetError,
    flores_code,
    read_flores,
    read_muse_test_dir,
    read_parallel_dir,
    shipped_sentences,
    shipped_words,
)
from index_builder.indexing.dictionaries import read_muse

REPO = Path(__file__).resolve().parents[2]
INDEX_LANGS = {"en", "sw", "he", "fr"}
DEMO_LANGS = ["ar", "de", "en", "es", "fi", "fr", "he", "hu", "id", "it", "ja", "pt", "sw", "zh"]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def muse_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "sw-he.txt", "maji מים\nmbwa כלב\nmbwa כלבה\n")
    _write(tmp_path / "en-fr.txt", "water eau\nDog chien\n")
    _write(tmp_path / "README.md", "not a dictionary\n")
    _write(tmp_path / "en-de.5000-6500.txt", "water Wasser\n")  # MUSE's own name: ignored
    return tmp_path


# ------------------------------------------------------------------------------------------------ MUSE


def test_muse_pairs_come_from_the_file_names(muse_dir):
    test_set = read_muse_test_dir(muse_dir, INDEX_LANGS)
    assert test_set.pairs == [("en", "fr"), ("sw", "he")]
    gold = [(e.source_word, e.target_word) for e in test_set.dictionaries[("sw", "he")].entries]
    assert gold == [("maji", "מים"), ("mbwa", "כלב"), ("mbwa", "כלבה")]
    assert test_set.name == muse_dir.name
    assert test_set.provenance()["entries"] == {"en-fr": 2, "sw-he": 3}


def test_muse_explicit_pairs_read_only_those_and_need_their_file(muse_dir):
    assert read_muse_test_dir(muse_dir, INDEX_LANGS, pairs=["sw-he"]).pairs == [("sw", "he")]
    with pytest.raises(TestSetError, match=r"he-sw\.txt: no such file \(pair he-sw asked for\)"):
        read_muse_test_dir(muse_dir, INDEX_LANGS, pairs=[("he", "sw")])
    with pytest.raises(TestSetError, match="expected SOURCE-TARGET"):
        read_muse_test_dir(muse_dir, INDEX_LANGS, pairs=["sw_he"])
    with pytest.raises(TestSetError, match="language 'ja' is not in the index"):  # before the missing file
        read_muse_test_dir(muse_dir, INDEX_LANGS, pairs=["sw-ja"])


def test_muse_language_outside_the_index_is_an_error_naming_file_and_language(muse_dir):
    with pytest.raises(
        TestSetError, match=r"en-fr\.txt: language 'fr' is not in the index \(index languages: en, he, sw\)"
    ):
        read_muse_test_dir(muse_dir, {"en", "sw", "he"})


def test_muse_same_source_and_target_is_an_error(tmp_path):
    _write(tmp_path / "en-en.txt", "a b\n")
    with pytest.raises(TestSetError, match="source and target are both 'en'"):
        read_muse_test_dir(tmp_path, INDEX_LANGS)


def test_muse_malformed_line_names_file_and_line_number(muse_dir):
    _write(muse_dir / "en-sw.txt", "water maji\n\nthree words here\n")
    with pytest.raises(TestSetError, match=r"en-sw\.txt:3: expected 'source_word target_word'"):
        read_muse_test_dir(muse_dir, INDEX_LANGS)


def test_muse_directory_without_dictionaries_says_what_it_expects(tmp_path):
    with pytest.raises(TestSetError, match="no such test dictionary directory"):
        read_muse_test_dir(tmp_path / "missing", INDEX_LANGS)
    _write(tmp_path / "en-de.5000-6500.txt", "water Wasser\n")
    with pytest.raises(TestSetError, match=r"expected files <src>-<trg>\.txt"):
        read_muse_test_dir(tmp_path, INDEX_LANGS)


def test_muse_overlap_with_probe_words_is_returned_and_can_be_dropped(muse_dir):
    test_set = read_muse_test_dir(muse_dir, INDEX_LANGS)
    probes = {
        "sw:Maji",
        "en:dog",
        "he:שמש",
        "fr:water",
        "noqualifier",
    }  # case-folded; fr:water is no test word
    overlap = test_set.overlap(probes)
    assert overlap == {"sw:maji", "en:dog"}
    kept = test_set.without(overlap)
    assert kept.overlap(probes) == set()
    assert [(e.source_word, e.target_word) for e in kept.dictionaries[("en", "fr")].entries] == [
        ("water", "eau")
    ]
    assert len(kept.dictionaries[("sw", "he")].entries) == 2
    assert kept.sha256 == test_set.sha256 and "minus 2 probe words" in kept.name
    assert test_set.overlap(set()) == set()


def test_muse_hash_is_stable_and_follows_the_content(muse_dir):
    first = read_muse_test_dir(muse_dir, INDEX_LANGS).sha256
    assert read_muse_test_dir(muse_dir, INDEX_LANGS).sha256 == first
    _write(muse_dir / "sw-he.txt", "maji מים\n")
    assert read_muse_test_dir(muse_dir, INDEX_LANGS).sha256 != first


# -------------------------------------------------------------------------------------- line-aligned


@pytest.fixture
def parallel_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "en.txt", "Good morning.\nThank you very much.\nWelcome home.\n")
    _write(tmp_path / "sw.txt", "\ufeffHabari ya asubuhi.\r\n\r\nKaribu nyumbani.\r\n")
    _write(tmp_path / "he.txt", "בוקר טוב.\nתודה רבה.\n\n")
    _write(tmp_path / "notes.md", "ignored\n")
    return tmp_path


def test_a_pair_uses_the_lines_both_languages_have(parallel_dir):
    test_set = read_parallel_dir(parallel_dir)
    assert test_set.languages == ["en", "he", "sw"]
    assert [(p.line, p.source, p.target) for p in test_set.pair("sw", "en")] == [
        (1, "Habari ya asubuhi.", "Good morning."),
        (3, "Karibu nyumbani.", "Welcome home."),
    ]
    assert [p.line for p in test_set.pair("sw", "he")] == [1]
    assert test_set.pair_counts() == {
        ("en", "he"): 2,
        ("en", "sw"): 2,
        ("he", "en"): 2,
        ("he", "sw"): 1,
        ("sw", "en"): 2,
        ("sw", "he"): 1,
    }
    assert test_set.provenance()["lines"] == 3


def test_a_language_the_set_lacks_is_an_error(parallel_dir):
    with pytest.raises(TestSetError, match=r"fr\.txt: no such file \(the test set has en, he, sw\)"):
        read_parallel_dir(parallel_dir, ["en", "fr"])
    with pytest.raises(TestSetError, match="has no 'fr' sentences"):
        read_parallel_dir(parallel_dir).pair("en", "fr")
    with pytest.raises(TestSetError, match="source and target are both 'en'"):
        read_parallel_dir(parallel_dir).pair("en", "en")


def test_files_of_different_lengths_are_an_error_naming_the_odd_file(parallel_dir):
    _write(parallel_dir / "sw.txt", "Habari.\nAsante.\nKaribu.\nKwaheri.\n")
    with pytest.raises(TestSetError, match=r"sw\.txt: 4 lines where the other files have 3"):
        read_parallel_dir(parallel_dir)


def test_bad_bytes_and_control_characters_name_the_line(parallel_dir):
    _write(parallel_dir / "he.txt", "בוקר טוב.\n".encode() + b"\xff\xfe\n\n")
    with pytest.raises(TestSetError, match=r"he\.txt:2: not UTF-8"):
        read_parallel_dir(parallel_dir)
    _write(parallel_dir / "he.txt", "a\nb\x00c\n\n")
    with pytest.raises(TestSetError, match=r"he\.txt:2: control character U\+0000"):
        read_parallel_dir(parallel_dir)


def test_one_file_is_not_a_parallel_set(tmp_path):
    _write(tmp_path / "en.txt", "Hello.\n")
    with pytest.raises(TestSetError, match=r"at least two files <lang>\.txt, found en\.txt"):
        read_parallel_dir(tmp_path)


def test_the_hash_covers_only_the_languages_read(parallel_dir):
    all_three = read_parallel_dir(parallel_dir).sha256
    assert read_parallel_dir(parallel_dir, ["en", "sw"]).sha256 != all_three
    assert read_parallel_dir(parallel_dir).sha256 == all_three


# ------------------------------------------------------------------------------------------- FLORES


@pytest.fixture
def flores_root(tmp_path: Path) -> Path:
    root = tmp_path / "flores200_dataset"
    _write(root / "devtest" / "swh_Latn.devtest", "Habari.\nAsante.\n")
    _write(root / "devtest" / "heb_Hebr.devtest", "שלום.\nתודה.\n")
    _write(root / "devtest" / "eng_Latn.devtest", "Hello.\nThanks.\n")
    _write(root / "dev" / "eng_Latn.dev", "One.\n")
    return root


def test_flores_layout_is_read_with_iso_codes(flores_root):
    test_set = read_flores(flores_root, ["sw", "he", "en"])
    assert test_set.kind == "flores" and test_set.name == "flores200_dataset/devtest"
    assert [(p.line, p.source, p.target) for p in test_set.pair("sw", "he")] == [
        (1, "Habari.", "שלום."),
        (2, "Asante.", "תודה."),
    ]
    from_split_folder = read_flores(flores_root / "devtest", ["sw", "he"])
    assert from_split_folder.pair("sw", "he") == read_flores(flores_root, ["sw", "he"]).pair("sw", "he")


def test_flores_missing_file_unknown_code_and_split_are_errors(flores_root):
    with pytest.raises(TestSetError, match=r"devtest/fra_Latn\.devtest: no such file"):
        read_flores(flores_root, ["en", "fr"])
    with pytest.raises(TestSetError, match="no FLORES-200 code known for language 'xx'"):
        read_flores(flores_root, ["en", "xx"])
    with pytest.raises(TestSetError, match="unknown FLORES-200 split 'test'"):
        read_flores(flores_root, ["en", "sw"], split="test")


def test_every_demo_language_has_a_flores_code():
    assert {code: flores_code(code) for code in DEMO_LANGS} == {
        code: FLORES_CODES[code] for code in DEMO_LANGS
    }
    assert (
        flores_code("sw") == "swh_Latn"
        and flores_code("zh") == "zho_Hans"
        and flores_code("ar") == "arb_Arab"
    )


# ------------------------------------------------------------------------------------ the shipped set


def test_the_shipped_set_covers_the_demo_languages_line_aligned():
    test_set = shipped_sentences()
    assert test_set.kind == "shipped" and test_set.languages == DEMO_LANGS
    lengths = {len(rows) for rows in test_set.lines.values()}
    assert len(lengths) == 1
    assert all(test_set.lines["en"])  # English is the source of every line
    counts = test_set.pair_counts(["en", "sw", "he"])
    assert counts[("sw", "he")] == counts[("he", "sw")] > 50
    notice = (Path(test_set.path) / "NOTICE").read_text(encoding="utf-8")
    assert "Django" in notice and "BSD 3-Clause" in notice
    assert (Path(test_set.path) / "LICENSE.django").is_file()


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_sentence_set", REPO / "scripts" / "make_sentence_set.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _po(messages: list[tuple]) -> bytes:
    """A .po file of (English, translation, fuzzy[, msgctxt]) messages; a tuple English is a plural."""
    catalog = Catalog(locale=None)
    for english, translation, fuzzy, *context in messages:
        catalog.add(english, translation, flags=["fuzzy"] if fuzzy else [], context=next(iter(context), None))
    out = io.BytesIO()
    write_po(out, catalog)
    return out.getvalue()


def _wheel(catalogs: dict[str, list[tuple]]) -> bytes:
    """An in-memory Django wheel: its LICENSE and one .po catalog per path (messages as `_po` takes them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("django-9.9.dist-info/licenses/LICENSE", "BSD licence text\n")
        for name, messages in catalogs.items():
            z.writestr(name, _po(messages))
    return buffer.getvalue()


def test_the_generator_keeps_aligned_sentences_and_drops_the_rest(tmp_path):
    wheel = tmp_path / "Django-9.9-py3-none-any.whl"
    fr = [
        ("Enter a valid email address.", "Saisissez une adresse e-mail valide.", False),
        ("This field is required here.", "Ce champ est obligatoire ici.", False),
        ("Enter a valid %(name)s value.", "Saisissez une valeur %(name)s valide.", False),
        ("Click <b>here</b> to continue now.", "Cliquez <b>ici</b> pour continuer.", False),
        ("Too short", "Trop court", False),
        ("A fuzzy message is never kept.", "Un message flou.", True),
        ("The same in both languages.", "The same in both languages.", False),
    ]
    sw = [("This field is required here.", "Sehemu hii inahitajika hapa.", False)]
    wheel.write_bytes(
        _wheel(
            {
                "django/conf/locale/fr/LC_MESSAGES/django.po": fr,
                "django/contrib/admin/locale/sw/LC_MESSAGES/django.po": sw,
            }
        )
    )
    out = tmp_path / "sentences"
    lines = _script().build(wheel, out, ("en", "fr", "sw"), "9.9")
    assert lines == {
        "en": ["Enter a valid email address.", "This field is required here."],
        "fr": ["Saisissez une adresse e-mail valide.", "Ce champ est obligatoire ici."],
        "sw": ["", "Sehemu hii inahitajika hapa."],
    }
    test_set = read_parallel_dir(out)
    assert [p.line for p in test_set.pair("sw", "fr")] == [2]
    assert "Django 9.9" in (out / "NOTICE").read_text(encoding="utf-8")
    assert (out / "LICENSE.django").read_text(encoding="utf-8") == "BSD licence text\n"


# ------------------------------------------------------------------------------ the shipped word set


def test_the_shipped_word_files_are_muse_dictionaries_without_copies():
    folder = REPO / "index_builder" / "data" / "words"
    files = sorted(folder.glob("*-*.txt"))
    languages = set(_script().LANGUAGES)
    assert len(files) == len(languages) * (len(languages) - 1)  # under the size limit: every ordered pair
    for path in files:
        source, target = path.stem.split("-")
        assert {source, target} <= languages and source != target, path.name
        entries = read_muse(path, source, target).entries
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(entries) == len(lines) and lines == sorted(set(lines)), path.name  # sorted, unique
        assert all(line.count(" ") == 1 for line in lines), path.name
        copies = [e for e in entries if copy_key(e.source_word) == copy_key(e.target_word)]
        assert not copies, (path.name, copies[:3])
    notice = (folder / "NOTICE").read_text(encoding="utf-8")
    assert "Django 5.2.9" in notice and "BSD 3-Clause" in notice and "sw-he: " in notice
    assert (folder / "LICENSE.django").read_bytes() == (
        folder.parent / "sentences" / "LICENSE.django"
    ).read_bytes()


def test_shipped_names_the_installed_word_set_and_a_path_stays_a_path(muse_dir, monkeypatch):
    every = shipped_words()
    assert every.kind == "shipped" and every.name == "bridgex-django-words" and len(every.pairs) == 182
    test_set = read_muse_test_dir("shipped", INDEX_LANGS)  # the pairs of the index's languages it has
    assert test_set.name == "bridgex-django-words" and test_set.kind == "shipped"
    assert sorted(test_set.pairs) == sorted((s, t) for s in INDEX_LANGS for t in INDEX_LANGS if s != t)
    assert test_set.provenance()["kind"] == "shipped" and len(test_set.sha256) == 64
    assert read_muse_test_dir("shipped", INDEX_LANGS, pairs=["sw-he"]).pairs == [("sw", "he")]
    assert test_set.sha256 == read_muse_test_dir("shipped", INDEX_LANGS).sha256
    with pytest.raises(TestSetError, match="language 'ja' is not in the index"):
        read_muse_test_dir("shipped", INDEX_LANGS, pairs=["sw-ja"])
    with pytest.raises(TestSetError, match="the shipped word set has no pair of the languages ko, ru"):
        shipped_words({"ko", "ru"})
    (muse_dir / "shipped").mkdir()
    (muse_dir / "shipped" / "sw-he.txt").write_text("mbwa כלב\n", encoding="utf-8")
    monkeypatch.chdir(muse_dir)
    own = read_muse_test_dir("./shipped", INDEX_LANGS)  # any other value is a directory
    assert own.kind == "muse" and own.name == "shipped" and own.pairs == [("sw", "he")]


def test_the_word_generator_keeps_one_word_messages_and_drops_the_rest(tmp_path):
    fr = [
        ("Search", "Rechercher", False),
        ("Save", "Enregistrer", False),
        ("May", "mai", False, "abbrev. month"),
        ("May", "Mai", False, "alt. month"),  # the same word: one line per pair and spelling
        ("Save changes", "Enregistrer", False),  # English of two words
        ("Delete", "Supprimer la sélection", False),  # translation of three words
        ("Menu", "Menú", False),  # a copy of the English (accents dropped), not of the Japanese
        ("Email", "%(email)s", False),  # placeholder
        ("Close", "<b>Fermer</b>", False),  # markup
        ("None", "-", False),  # punctuation alone
        ("S", "D", False, "one letter Sunday"),  # one letter
        ("Café", "Café", False),  # not letters a-z
        ("Add", "Ajouter", True),  # fuzzy
        (("item", "items"), ("élément", "éléments"), False),  # plural
    ]
    ja = [
        ("Search", "検索", False),
        ("May", "5月", False, "abbrev. month"),
        ("Save", "保存 する", False),  # whitespace: two tokens
        ("Menu", "メニュー", False),
    ]
    data = _wheel(
        {
            "django/conf/locale/fr/LC_MESSAGES/django.po": fr,
            "django/contrib/admin/locale/ja/LC_MESSAGES/django.po": ja,
        }
    )
    script = _script()
    with zipfile.ZipFile(io.BytesIO(data)) as catalogs:  # the filter alone, on the in-memory catalog
        assert script.catalog_words(catalogs, "fr") == {
            (None, "Search"): "Rechercher",
            (None, "Save"): "Enregistrer",
            ("abbrev. month", "May"): "mai",
            ("alt. month", "May"): "Mai",
            (None, "Menu"): "Menú",  # copies are dropped per pair, not per language
        }
    wheel = tmp_path / "Django-9.9-py3-none-any.whl"
    wheel.write_bytes(data)
    out = tmp_path / "words"
    pairs = script.build_words(wheel, out, ("en", "fr", "ja"), "9.9")
    assert pairs == {
        ("en", "fr"): ["May Mai", "May mai", "Save Enregistrer", "Search Rechercher"],
        ("en", "ja"): ["May 5月", "Menu メニュー", "Search 検索"],
        ("fr", "en"): ["Enregistrer Save", "Mai May", "Rechercher Search", "mai May"],
        ("fr", "ja"): ["Menú メニュー", "Rechercher 検索", "mai 5月"],
        ("ja", "en"): ["5月 May", "メニュー Menu", "検索 Search"],
        ("ja", "fr"): ["5月 mai", "メニュー Menú", "検索 Rechercher"],
    }
    assert sorted(p.name for p in out.glob("*.txt")) == [
        "en-fr.txt",
        "en-ja.txt",
        "fr-en.txt",
        "fr-ja.txt",
        "ja-en.txt",
        "ja-fr.txt",
    ]
    test_set = read_muse_test_dir(out, {"en", "fr", "ja"})
    assert [e.target_word for e in test_set.dictionaries[("fr", "ja")].entries] == ["メニュー", "検索", "5月"]
    notice = (out / "NOTICE").read_text(encoding="utf-8")
    assert "Django 9.9" in notice and "fr-ja: 3 entries, 3 source words" in notice
    assert (out / "LICENSE.django").read_text(encoding="utf-8") == "BSD licence text\n"
