"""The test items of a run, per pair: the index's held-out words (checked against the dictionaries the user
names), a word test set's entries (`--test-dict-dir`) or a sentence set's lines (`--task translate`);
minus any probe word, in a stable order (what `--limit` takes a prefix of), with every gold translation,
and the salted halves `calibrate` and `eval --words` take."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..indexing.dictionaries import cldr_dictionaries, held_out_words, load_muse_dir, split_entries
from . import scoring
from .client import (
    EvaluationError,
)
from .config import DEFAULT_TEST_FRACTION, WORD_SETS, EvalConfig, Pair

if TYPE_CHECKING:
    from .tasks import IndexData


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


TestEntries = dict[Pair, tuple[list[tuple[str, str]], dict[str, str | None]]]


def pair_test_items(
    cfg: EvalConfig, data: IndexData, known: list[str], probe_words: dict[str, set[str]]
) -> TestEntries:
    """Per pair: (source item, reference) entries and their categories, from the run's test set: a sentence
    set (`--task translate`), a word test set (`--test-dict-dir`, its probe words dropped) or the index's
    held-out split. May fill in `cfg.pairs` and `cfg.test_set`."""
    if cfg.task == "translate":
        return _sentence_entries(cfg)
    if cfg.test_dict_dir is not None:
        return _test_dict_entries(cfg, known, probe_words)
    return _held_out_entries(cfg, data, known)


def _held_out_entries(cfg: EvalConfig, data: IndexData, known: list[str]) -> TestEntries:
    """Per pair: the index's held-out (source word, target word) entries and their categories, checked
    against the same split recomputed from the dictionaries the user names."""
    params = json.loads(data.provenance.get("parameters") or "{}")
    test_fraction = float(params.get("test_fraction", DEFAULT_TEST_FRACTION))
    recomputed = recompute_entries(cfg.dictionaries, known, test_fraction)
    out: TestEntries = {}
    for s, t in cfg.pairs:
        index_test = oriented_entries(data.entries, (s, t), "test")
        if not index_test:
            raise EvaluationError(f"--pairs {s}-{t}: the index has no held-out test words for this pair")
        differs = split_disagreement(set(index_test), set(oriented_entries(recomputed, (s, t), "test")))
        if differs:
            source = "--dictionaries cldr" if cfg.dictionaries == "cldr" else f"--dict-dir {cfg.dictionaries}"
            raise EvaluationError(
                f"--pairs {s}-{t}: the index's held-out split does not match {source} ({differs}); "
                "give the dictionaries the index was built from"
            )
        out[(s, t)] = index_test, entry_categories(data.entries, (s, t))
    return out


def _test_dict_entries(cfg: EvalConfig, known: list[str], probe_words: dict[str, set[str]]) -> TestEntries:
    """Per pair: the entries of a MUSE test directory (`--test-dict-dir`), minus every entry with a probe
    word of the index on either side (demonstrations come from the probe split, so no demonstration word is
    a test word). Fills in `cfg.pairs` (from the file names when none were given) and `cfg.test_set`."""
    from .testsets import TestSetError, read_muse_test_dir

    try:
        test_set = read_muse_test_dir(cfg.test_dict_dir or "", known, cfg.pairs or None)
    except TestSetError as err:
        raise EvaluationError(f"--test-dict-dir: {err}") from None
    probes = [f"{lang}:{w}" for lang, words in probe_words.items() for w in words]
    overlap = test_set.overlap(probes)
    kept = test_set.without(overlap)
    cfg.pairs = test_set.pairs
    out: TestEntries = {}
    for s, t in cfg.pairs:
        d = kept.dictionaries.get((s, t))
        if d is None:
            where = test_set.path / f"{s}-{t}.txt"
            raise EvaluationError(f"--test-dict-dir: {where}: every entry has a probe word of the index")
        out[(s, t)] = [(e.source_word, e.target_word) for e in d.entries], {}
    cfg.test_set = {**kept.provenance(), "probe_words_dropped": len(overlap)}
    return out


def read_sentence_set(cfg: EvalConfig, languages: Sequence[str]):
    """The parallel set of a translate evaluation: `--test-dir` (line-aligned `<lang>.txt`, or FLORES-200
    with `dev/` or `devtest/`), else the shipped set; a TestSetError becomes an EvaluationError."""
    from .testsets import TestSetError, read_flores, read_parallel_dir, shipped_sentences

    try:
        if cfg.test_dir is None:
            return shipped_sentences(languages)
        directory = Path(cfg.test_dir)
        flores = directory.name in ("dev", "devtest") or any(
            (directory / s).is_dir() for s in ("dev", "devtest")
        )
        if flores:
            split = directory.name if directory.name in ("dev", "devtest") else "devtest"
            return read_flores(directory, languages, split)
        return read_parallel_dir(directory, languages)
    except TestSetError as err:
        raise EvaluationError(f"{'--test-dir' if cfg.test_dir else 'shipped sentence set'}: {err}") from None


def _sentence_entries(cfg: EvalConfig) -> TestEntries:
    """Per pair: (source sentence, reference) of the lines both languages have; fills in `cfg.test_set`."""
    from .testsets import TestSetError

    languages = sorted({code for pair in cfg.pairs for code in pair})
    sentences = read_sentence_set(cfg, languages)
    out: TestEntries = {}
    for s, t in cfg.pairs:
        try:
            pairs = sentences.pair(s, t)
        except TestSetError as err:
            raise EvaluationError(f"--pairs {s}-{t}: {err}") from None
        if not pairs:
            raise EvaluationError(f"--pairs {s}-{t}: {sentences.name} has no line in both languages")
        out[(s, t)] = [(p.source, p.target) for p in pairs], {}
    cfg.test_set = sentences.provenance()
    return out
