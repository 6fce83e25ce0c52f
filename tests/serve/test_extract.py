"""The translation itself out of an instruct model's answer (bridgex_serve.extract)."""

from __future__ import annotations

import pytest

from bridgex_serve.extract import extract_translation


@pytest.mark.parametrize(
    ("answer", "names", "expected"),
    [
        ("Voici la traduction en français :\nLe chat dort sur la table.", (), "Le chat dort sur la table."),
        ('Here is the translation:\n\n"El perro come."', (), "El perro come."),
        ("Sure! Here's the translation into German:\nDer Hund isst.", (), "Der Hund isst."),
        ("Sure, here is the translation.\nDer Hund isst.", (), "Der Hund isst."),
        ("Voici la traduction : Le chat dort.", (), "Le chat dort."),
        ("Français : « Le chat dort. »", ("Français", "French"), "Le chat dort."),
        ("French:\nLe chat dort.", ("French",), "Le chat dort."),
        ("```\nLe chat dort.\n```", (), "Le chat dort."),
        ("Le chat dort.\n\nNote: « dort » is the present tense.", (), "Le chat dort."),
        ("「猫が寝ている。」", (), "猫が寝ている。"),
        ("La traducción es:\nEl gato duerme.", (), "El gato duerme."),
        ("  chien  ", (), "chien"),
        ("", (), ""),
    ],
)
def test_preambles_labels_quotes_and_notes_are_removed(answer, names, expected):
    assert extract_translation(answer, names) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "Le ratio est de 3:2 dans ce cas.",  # a colon inside the translation is not a label
        "Sure, I will come tomorrow.",  # an opener word without talk of translating is content
        "Il a dit : « Viens demain ».",  # a colon in reported speech is not a preamble
        "Premier vers,\nsecond vers.",  # a multi-line translation keeps its lines
    ],
)
def test_translations_that_look_like_preambles_are_kept(answer):
    assert extract_translation(answer) == answer


def test_a_lone_preamble_like_line_is_not_emptied():
    assert extract_translation("Traduction :") == "Traduction :"
