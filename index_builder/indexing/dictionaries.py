"""Bilingual dictionaries: MUSE files, word lists aligned through CLDR, and a leak-free probe/test split.

A `PairDictionary` holds the entries of one language pair oriented source → target. MUSE files are read as
they are (one `source_word target_word` pair per line); CLDR dictionaries pair the names one concept has in
two locales (`month:1` is January / Januari / ינואר).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import unicodedata
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from babel import Locale

from bridgex_index.words import copy_key
from index_builder.indexing.languages import validate_codes


class DictionaryError(ValueError):
    """A dictionary that cannot be read or does not cover what was asked; the message names the file."""


@dataclass(frozen=True)
class Entry:
    """One translation pair; CLDR entries also carry their concept key (`month:1`) and category (`month`)."""

    source_word: str
    target_word: str
    concept: str | None = None
    category: str | None = None

    def reversed(self) -> Entry:
        """The same pair read target → source."""
        return replace(self, source_word=self.target_word, target_word=self.source_word)


@dataclass
class PairDictionary:
    """The entries of one language pair, oriented source → target; `origin` says where they came from."""

    source: str
    target: str
    entries: list[Entry]
    origin: str

    def reversed(self) -> PairDictionary:
        """The target → source view of the same entries."""
        return PairDictionary(self.target, self.source, [e.reversed() for e in self.entries], self.origin)


# ---------------------------------------------------------------------------------------------- MUSE files


def read_muse(path: str | Path, source: str, target: str) -> PairDictionary:
    """Read a MUSE dictionary: one `source_word target_word` pair per line, separated by whitespace.

    A source word may have several lines (several gold translations). Blank lines are skipped, a leading BOM
    is dropped, identical pairs are kept once. Anything else that is not two fields is a DictionaryError
    naming file and line.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DictionaryError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise DictionaryError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    entries: dict[Entry, None] = {}  # ordered set
    for lineno, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = line.rstrip("\r")
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DictionaryError(f"{path}:{lineno}: expected 'source_word target_word', got {line!r}")
        entries.setdefault(Entry(fields[0], fields[1]), None)
    if not entries:
        raise DictionaryError(f"{path}: no entries")
    return PairDictionary(source, target, list(entries), origin=f"muse:{path}")


def _merge(parts: Sequence[PairDictionary]) -> PairDictionary:
    """One dictionary from several with the same orientation; identical entries kept once."""
    entries = dict.fromkeys(e for part in parts for e in part.entries)
    origin = " + ".join(part.origin for part in parts)
    return PairDictionary(parts[0].source, parts[0].target, list(entries), origin)


def _expected_files(code: str, others: Iterable[str]) -> list[str]:
    return [name for other in others for name in (f"{code}-{other}.txt", f"{other}-{code}.txt")]


def _pair_files(directory: Path, a: str, b: str) -> list[tuple[Path, str, str]]:
    """The existing files of pair (a, b) as (path, source, target)."""
    candidates = [(directory / f"{a}-{b}.txt", a, b), (directory / f"{b}-{a}.txt", b, a)]
    return [(path, s, t) for path, s, t in candidates if path.is_file()]


def load_muse_dir(directory: str | Path, langs: Sequence[str]) -> dict[tuple[str, str], PairDictionary]:
    """Read `<a>-<b>.txt` and/or `<b>-<a>.txt` for every pair a < b of `langs`, keyed (a, b), oriented a → b.

    When both files exist their entries are merged. Pairs without a file are absent from the result; a
    language that appears in no file is a DictionaryError.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DictionaryError(f"{directory}: no such dictionary directory")
    codes = sorted(set(langs))
    if len(codes) < 2:
        raise DictionaryError(
            f"{directory}: dictionaries need at least two languages, got {', '.join(codes)}"
        )
    files = {(a, b): _pair_files(directory, a, b) for a, b in itertools.combinations(codes, 2)}
    covered = {code for pair, found in files.items() if found for code in pair}
    for code in codes:
        if code not in covered:
            expected = ", ".join(_expected_files(code, [c for c in codes if c != code]))
            raise DictionaryError(
                f"{directory}: no MUSE dictionary for language {code!r} (expected one of {expected})"
            )
    result: dict[tuple[str, str], PairDictionary] = {}
    for (a, b), found in files.items():
        if found:
            parts = [read_muse(path, s, t) for path, s, t in found]
            result[(a, b)] = _merge([p if p.source == a else p.reversed() for p in parts])
    return result


# --------------------------------------------------------------------------------------------------- CLDR

# Categories of CLDR names, common nouns first (a word pair found in two categories keeps the first).
# Territories, languages, scripts and currencies are mostly proper nouns and transliterations, but they are
# where most of the words are: the default takes everything, COMMON_NOUN_CATEGORIES the common nouns only.
CLDR_CATEGORIES: tuple[str, ...] = ("unit", "month", "weekday", "language", "territory", "script", "currency")
COMMON_NOUN_CATEGORIES: tuple[str, ...] = ("unit", "month", "weekday")
DEFAULT_CLDR_CATEGORIES: tuple[str, ...] = CLDR_CATEGORIES

_WORD_PUNCTUATION = frozenset("-‐'’·\u200c\u200d")  # hyphens, apostrophes, middle dot, ZWNJ/ZWJ


def _unit_word(patterns: dict, unit: str) -> str | None:
    """A unit's singular name from its count patterns (`{0} meter` → meter).

    babel's `get_unit_name(unit, length="long")` returns None for most units in sw, he, de and ja: babel
    does not resolve CLDR's rule that a missing long form inherits the short one. We follow that rule here.
    """
    for length in ("long", "short"):
        forms = patterns.get(unit, {}).get(length) or {}
        for form in ("one", "other"):
            if forms.get(form):
                return forms[form].replace("{0}", "").strip()
    return None


def _unit_names(locale: Locale) -> dict[str, str]:
    # babel keeps the unit count patterns only in locale data; `babel.units` reads them the same way.
    patterns = locale._data["unit_patterns"]
    names = {unit: _unit_word(patterns, unit) for unit in patterns}
    return {unit: name for unit, name in names.items() if name}


# Month and weekday names come from the `format` context only: babel bug #1234 leaks `stand-alone` names
# between locales in one process (Swahili came back as 一月). Weekday keys are babel's: 0 is Monday.
_CATEGORY_NAMES: dict[str, Callable[[Locale], dict]] = {
    "unit": _unit_names,
    "month": lambda locale: dict(locale.months["format"]["wide"]),
    "weekday": lambda locale: dict(locale.days["format"]["wide"]),
    "language": lambda locale: dict(locale.languages),
    "territory": lambda locale: dict(locale.territories),
    "script": lambda locale: dict(locale.scripts),
    "currency": lambda locale: dict(locale.currencies),
}


def _is_word(text: str) -> bool:
    """One word: letters, marks and digits, with inner hyphens or apostrophes; no space, dot or symbol."""
    if not text or text[0] in _WORD_PUNCTUATION or text[-1] in _WORD_PUNCTUATION:
        return False
    return all(unicodedata.category(c)[0] in "LMN" or c in _WORD_PUNCTUATION for c in text)


@functools.cache
def _english_unit_symbols() -> dict[str, str]:
    """English short unit forms, case-folded (m, kg, px): what other locales' short forms often are too."""
    patterns = Locale("en")._data["unit_patterns"]
    symbols = {
        unit: _unit_word({unit: {"short": lengths.get("short")}}, unit) for unit, lengths in patterns.items()
    }
    return {unit: symbol.casefold() for unit, symbol in symbols.items() if symbol}


def _concept_words(code: str, categories: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Concept key → (word, category) for one locale: single words only, NFC, as CLDR writes them.

    Dropped: names equal to the root locale's (M01, Sun, the unit symbol m: what babel returns when a
    locale has no name of its own) and unit names equal to the English unit symbol (kg, px, ppm).
    """
    locale, root = Locale(code), Locale("root")
    result: dict[str, tuple[str, str]] = {}
    for category in categories:
        placeholders = _CATEGORY_NAMES[category](root)
        symbols = _english_unit_symbols() if category == "unit" else {}
        for key, name in _CATEGORY_NAMES[category](locale).items():
            word = unicodedata.normalize("NFC", name or "").strip()
            if not _is_word(word) or word == placeholders.get(key) or word.casefold() == symbols.get(key):
                continue
            result[f"{category}:{key}"] = (word, category)
    return result


def _pair_entries(words_a: dict[str, tuple[str, str]], words_b: dict[str, tuple[str, str]]) -> list[Entry]:
    """Entries for the concepts both locales name, minus copies; a repeated pair keeps its first concept."""
    entries: dict[tuple[str, str], Entry] = {}
    for concept, (word_a, category) in words_a.items():
        if concept not in words_b:
            continue
        word_b = words_b[concept][0]
        if copy_key(word_a) != copy_key(word_b):
            entries.setdefault((word_a, word_b), Entry(word_a, word_b, concept, category))
    return list(entries.values())


def cldr_dictionaries(
    langs: Sequence[str], categories: Sequence[str] = DEFAULT_CLDR_CATEGORIES
) -> dict[tuple[str, str], PairDictionary]:
    """Dictionaries for every pair a < b of `langs` from names CLDR gives one concept in both locales.

    Both words must be single words and differ after case-folding and removing accents (a copy such as
    Kenya/Kenya or Curaçao/Curacao teaches nothing). Words keep CLDR's casing: CLDR writes names as they
    appear mid-sentence in each language (German nouns and English month names capitalised, French month
    names lower case), which is what a model reads in running text; lower-casing would misspell German
    nouns. Unknown language codes raise UnknownLanguageError. Pairs with no shared concept are absent.
    """
    unknown = [c for c in categories if c not in _CATEGORY_NAMES]
    if unknown:
        raise ValueError(
            f"unknown CLDR categories {', '.join(unknown)} (expected some of {', '.join(CLDR_CATEGORIES)})"
        )
    codes = sorted(set(validate_codes(langs)))
    words = {code: _concept_words(code, categories) for code in codes}
    result: dict[tuple[str, str], PairDictionary] = {}
    for a, b in itertools.combinations(codes, 2):
        entries = _pair_entries(words[a], words[b])
        if entries:
            result[(a, b)] = PairDictionary(a, b, entries, origin=f"cldr:{','.join(categories)}")
    return result


def cldr_category_counts(
    dicts: dict[tuple[str, str], PairDictionary] | Iterable[PairDictionary],
) -> dict[str, int]:
    """Number of entries per category over the given dictionaries (entries without a category: `none`)."""
    values = dicts.values() if isinstance(dicts, dict) else dicts
    counts: dict[str, int] = {}
    for d in values:
        for entry in d.entries:
            key = entry.category or "none"
            counts[key] = counts.get(key, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------------ split


def _fraction(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for a key, the same on every run and machine."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def _unit(d: PairDictionary, entry: Entry) -> str:
    """The split unit: the concept when there is one, else the source-language word."""
    return f"concept:{entry.concept}" if entry.concept else f"{d.source}:{entry.source_word}"


def held_out_words(d: PairDictionary, test_fraction: float = 0.2) -> set[str]:
    """Language-qualified words (`sw:mbwa`) of the test entries of `d`: what no probe of any pair may use."""
    _, test = split_entries(d, test_fraction)
    return {f"{d.source}:{e.source_word}" for e in test} | {f"{d.target}:{e.target_word}" for e in test}


def split_entries(
    d: PairDictionary,
    test_fraction: float = 0.2,
    max_pairs: int | None = None,
    held_out: Collection[str] = frozenset(),
) -> tuple[list[Entry], list[Entry]]:
    """Split a dictionary into (probe_entries, test_entries) so that evaluation never sees a probe word.

    A split unit (concept, else source word) is a test unit when the hash of its key falls under
    `test_fraction`; keys are language-qualified (`en:dog`, `concept:month:1`), so the same word or concept
    is held out in every pair. All entries of a test unit are test entries. A probe entry must have neither
    word in a test entry, and, without concepts, its target word must not hash to a test unit in its own
    language (`sw:mbwa`). Entries that are neither are dropped. `held_out` adds language-qualified words
    that probes must not use, so a word held out in another pair is not probed here either (collect them
    with `held_out_words` over all pairs first). `max_pairs` caps the probe entries, chosen by hash order,
    after that filter; test entries are not capped. Both lists keep dictionary order.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if max_pairs is not None and max_pairs < 0:
        raise ValueError(f"max_pairs must be at least 0, got {max_pairs}")
    is_test = [_fraction(_unit(d, e)) < test_fraction for e in d.entries]
    test = [e for e, held in zip(d.entries, is_test, strict=True) if held]
    seen = {f"{d.source}:{e.source_word}" for e in test} | {f"{d.target}:{e.target_word}" for e in test}
    seen |= set(held_out)

    def usable(entry: Entry) -> bool:
        target_key = f"{d.target}:{entry.target_word}"
        if f"{d.source}:{entry.source_word}" in seen or target_key in seen:
            return False
        return entry.concept is not None or _fraction(target_key) >= test_fraction

    probes = [e for e, held in zip(d.entries, is_test, strict=True) if not held and usable(e)]
    if max_pairs is not None and len(probes) > max_pairs:
        ranked = sorted(probes, key=lambda e: _fraction(f"{_unit(d, e)}\t{e.source_word}\t{e.target_word}"))
        kept = set(ranked[:max_pairs])
        probes = [e for e in probes if e in kept]
    return probes, test
