import pytest

from index_builder.indexing.languages import (
    DEFAULT_HIGH_RESOURCE,
    UnknownLanguageError,
    english_name,
    low_resource_set,
    prompt_name,
    validate_codes,
)


def test_validate_codes_strips_lowercases_and_deduplicates_in_order():
    assert validate_codes([" SW", "en", "sw", "He\n", "en"]) == ["sw", "en", "he"]


def test_validate_codes_accepts_cldr_three_letter_codes():
    assert validate_codes(["fil"]) == ["fil"]


def test_unknown_code_is_rejected_with_its_name():
    with pytest.raises(UnknownLanguageError) as info:
        validate_codes(["en", "xx"])
    assert (
        str(info.value)
        == "unknown language code 'xx' (expected an ISO 639-1 code babel knows, e.g. en, sw, he)"
    )
    assert isinstance(info.value, ValueError)
    assert info.value.code == "xx"


@pytest.mark.parametrize("code", ["pt-BR", "en_US", "root", "", "  ", "tl", "english"])
def test_regional_variants_and_non_languages_are_rejected(code):
    with pytest.raises(UnknownLanguageError):
        validate_codes([code])


def test_empty_list_is_rejected():
    with pytest.raises(ValueError, match="no language codes"):
        validate_codes([])


def test_a_bare_string_is_not_a_list_of_codes():
    with pytest.raises(TypeError, match="'en'"):
        validate_codes("en")


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("sw", "Kiswahili"),
        ("he", "עברית"),
        ("ja", "日本語"),
        ("de", "Deutsch"),
        ("id", "Indonesia"),
        ("en", "English"),
        ("fr", "Français"),
        ("fi", "Suomi"),
        ("ar", "العربية"),
    ],
)
def test_prompt_name_is_own_name_with_capital_first_letter(code, name):
    assert prompt_name(code) == name


def test_prompt_name_of_unknown_code_raises_unknown_language():
    with pytest.raises(UnknownLanguageError, match="'qq'"):
        prompt_name("qq")


@pytest.mark.parametrize(("code", "name"), [("sw", "Swahili"), ("he", "Hebrew"), ("id", "Indonesian")])
def test_english_name(code, name):
    assert english_name(code) == name


def test_default_high_resource_languages():
    assert {"en", "de", "fr", "es", "it", "pt", "zh", "ru", "ja", "nl"} == DEFAULT_HIGH_RESOURCE


def test_low_resource_by_default_is_every_language_not_high_resource():
    assert low_resource_set(["en", "sw", "he", "de", "id"], None) == {"sw", "he", "id"}


def test_explicit_low_resource_list_replaces_the_default():
    assert low_resource_set(["en", "sw", "he"], ["HE "]) == {"he"}
    assert low_resource_set(["en", "sw", "he"], []) == set()
    assert low_resource_set(["en", "sw", "de"], ["de"]) == {"de"}


def test_explicit_low_resource_language_outside_the_index_is_rejected():
    with pytest.raises(ValueError, match="fi"):
        low_resource_set(["en", "sw"], ["sw", "fi"])
