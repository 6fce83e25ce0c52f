"""The test words: the index's held-out split, checked against the dictionaries the user names, minus any
probe word, in a stable order (what `--limit` takes a prefix of), with every gold translation."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..indexing.dictionaries import cldr_dictionaries, held_out_words, load_muse_dir, split_entries
from . import scoring
from .client import (
    EvaluationError,
)
from .config import WORD_SETS, Pair


@dataclass(frozen=True)
class HeldOutWord:
    word: str
    golds: tuple[str, ...]
    category: str | None = None  # CLDR category of the word's entry (unit, language, ...); None for MUSE


def stable_order(source: str, target: str, words: Sequence[str]) -> list[str]:
    """Words in a pseudo-random order that is the same on every run (what `--limit` takes a prefix of)."""

    def key(w: str) -> bytes:
        return hashlib.sha256(f"{source}\t{target}\t{w}".encode()).digest()

    return sorted(words, key=key)


def word_half(pair: Pair, words: Sequence[str], half: str) -> list[str]:
    """`words` of the pair's source language in one half of `calibration.split_words` (`all`: every one).

    Keyed `source:word`, so a word is in the same half for every target."""
    from .decision import split_words

    if half == "all":
        return list(words)
    if half not in WORD_SETS:
        raise EvaluationError(f"--words {half!r} is not one of {', '.join(WORD_SETS)}")
    calibration, evaluation = split_words(f"{pair[0]}:{w}" for w in words)
    chosen = {k.split(":", 1)[1] for k in (calibration if half == "calibration" else evaluation)}
    return [w for w in words if w in chosen]


def select_test_words(
    test_entries: Sequence[tuple[str, str]],
    probe_words: Collection[str],
    limit: int | None,
    pair: Pair,
    categories: Mapping[str, str | None] | None = None,
    half: str = "all",
) -> tuple[list[HeldOutWord], int]:
    """Test words of one oriented pair with their gold sets, minus any word a probe used.

    `test_entries` are (source word, target word); `probe_words` are the source language's probe words;
    `categories` maps source words to their category; `half` keeps one half of `word_half` (before
    `limit`). Returns (words in stable order, capped at `limit`; number of words dropped as probe words).
    """
    golds = scoring.gold_sets(test_entries)
    dropped = [w for w in golds if w in probe_words]
    kept = word_half(pair, [w for w in golds if w not in probe_words], half)
    ordered = stable_order(*pair, kept)
    if limit is not None:
        ordered = ordered[:limit]
    cats = categories or {}
    return [HeldOutWord(w, golds[w], cats.get(w)) for w in ordered], len(dropped)


def split_disagreement(index_test: set[tuple[str, str]], recomputed: set[tuple[str, str]]) -> str | None:
    """A one-line description of how two held-out splits differ, or None when they agree."""
    if index_test == recomputed:
        return None
    only_index, only_recomputed = index_test - recomputed, recomputed - index_test
    example = sorted(only_index or only_recomputed)[0]
    return (
        f"{len(only_index)} test entries only in the index, {len(only_recomputed)} only in the dictionaries "
        f"(e.g. {example[0]} → {example[1]})"
    )


def oriented_entries(entries: Sequence[tuple], pair: Pair, split: str | None) -> list[tuple[str, str]]:
    s, t = pair
    out = []
    for a, b, wa, wb, *_rest, sp in entries:
        if split is not None and sp != split:
            continue
        if (a, b) == (s, t):
            out.append((wa, wb))
        elif (a, b) == (t, s):
            out.append((wb, wa))
    return out


def entry_categories(entries: Sequence[tuple], pair: Pair) -> dict[str, str | None]:
    """Source word → category of its first test entry in the pair."""
    s, t = pair
    out: dict[str, str | None] = {}
    for a, b, wa, wb, _concept, category, split in entries:
        if split == "test" and (a, b) in ((s, t), (t, s)):
            out.setdefault(wa if a == s else wb, category)
    return out


def recompute_entries(dictionaries: str, langs: Sequence[str], test_fraction: float) -> list[tuple]:
    """The dictionaries split again as the builder splits them, as rows shaped like `dictionary_entries`.

    The probe side is not capped by `max_pairs` (every entry that may be probed without touching a
    held-out word): that is where demonstrations come from.
    """
    dicts = cldr_dictionaries(langs) if dictionaries == "cldr" else load_muse_dir(Path(dictionaries), langs)
    held_out = set().union(*(held_out_words(d, test_fraction) for d in dicts.values()))
    rows: list[tuple] = []
    for (a, b), d in sorted(dicts.items()):
        probe, test = split_entries(d, test_fraction, None, held_out)
        for split, entries in (("probe", probe), ("test", test)):
            rows += [(a, b, e.source_word, e.target_word, e.concept, e.category, split) for e in entries]
    return rows
