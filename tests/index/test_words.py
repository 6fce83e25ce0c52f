"""The one comparison form of a word (`bridgex_index.words.normalise_word`)."""

from __future__ import annotations

import pytest

from bridgex_index.words import normalise_word


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  «Maji»  ", "maji"),
        ("New\u00a0\u2003York\n", "new york"),  # any run of Unicode whitespace is one space
        ("\u3000「水」。", "水"),
        ("שָׁלוֹם", "שלום"),  # Hebrew points dropped
        ("كِتَاب", "كتاب"),  # Arabic harakat dropped
        ("مـــاء", "ماء"),  # tatweel dropped
        ("Café", "café"),  # Latin accents kept
        ("...", ""),
        ("", ""),
    ],
)
def test_normalise_word(text: str, expected: str) -> None:
    assert normalise_word(text) == expected


def test_a_long_text_normalises_whole() -> None:
    """The proxy normalises whole request texts for the copy rule: nothing is cut, every space collapsed."""
    words = ["Habari", "ya", "ASUBUHI"] * 100_000
    text = "\t".join(words) + " \n"
    assert normalise_word(text) == " ".join(w.casefold() for w in words)
