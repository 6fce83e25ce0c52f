"""The one comparison form of a word, shared by scoring (P@1 hits) and the server (copy detection).

Unicode NFC → drop Hebrew points and cantillation, Arabic harakat, Quranic marks, superscript alef and
tatweel → case-fold → collapse inner whitespace → strip surrounding whitespace, punctuation and quotes
(« » „ “ 「 」 。 …) → NFC again (case-folding can leave a decomposed sequence, e.g. `ΐ`).

Accents of Latin-script words are kept (`café` ≠ `cafe`), as MUSE keeps them; only Hebrew and Arabic vowel
marks are dropped because dictionaries write those words unpointed while models sometimes point them.
"""

from __future__ import annotations

import unicodedata

# Hebrew cantillation and points (U+0591–U+05C7), minus the punctuation in that block:
# maqaf U+05BE, paseq U+05C0, sof pasuq U+05C3, nun hafukha U+05C6.
_HEBREW_MARKS = {chr(c) for c in range(0x0591, 0x05C8)} - {"\u05be", "\u05c0", "\u05c3", "\u05c6"}
# Arabic harakat, Quranic annotation marks, superscript alef and tatweel (kashida).
_ARABIC_MARKS = (
    {chr(c) for c in range(0x0610, 0x061B)}
    | {chr(c) for c in range(0x064B, 0x0660)}
    | {"\u0670", "\u0640"}
    | {chr(c) for c in range(0x06D6, 0x06DD)}
    | {chr(c) for c in range(0x06DF, 0x06E5)}
    | {"\u06e7", "\u06e8"}
    | {chr(c) for c in range(0x06EA, 0x06EE)}
)
_DROPPED = dict.fromkeys(map(ord, _HEBREW_MARKS | _ARABIC_MARKS))  # a str.translate table: delete


def _edge(ch: str) -> bool:
    """Characters stripped from both ends: punctuation (quotes, brackets, 。、), separators, controls."""
    return unicodedata.category(ch)[0] in "PZC"


def normalise_word(text: str) -> str:
    """The comparable form of a word (see the module docstring); `""` for nothing left."""
    text = unicodedata.normalize("NFC", text)
    # str.translate and str.split are single fast C passes: a 4 MiB request text normalises in tens of ms
    text = " ".join(text.translate(_DROPPED).casefold().split())
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return unicodedata.normalize("NFC", text[start:end])


def copy_key(word: str) -> str:
    """What two spellings of one word share: `normalise_word` without accents (Curaçao ≈ Curacao). The one
    copy rule: dictionaries drop entries whose two words share it, the server's demonstrations skip them and
    its copy fallback compares by it."""
    decomposed = unicodedata.normalize("NFKD", normalise_word(word))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
