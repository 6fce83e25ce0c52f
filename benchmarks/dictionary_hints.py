"""Could dictionary hints (Chain-of-Dictionary) help sentence translation with the index's dictionaries?

Before a hint feature is built into the proxy it must be able to fire and to say something true. This
measures both, with no model: for every sentence of the shipped parallel set (Django catalogs) and every
ordered pair, the source words (1–3 word n-grams, `copy_key` comparison) that the pair's CLDR dictionary
knows — the dictionaries every index is built from, all categories, not only the index's sampled probes —
and, per hint, whether its dictionary translation occurs in the reference translation (as a run of
`copy_key`-equal words). Reported per pair and pooled:

- coverage: sentences with at least one hint;
- precision: hints whose translation is in the reference (a lower bound on right hints: a right hint may be
  inflected differently in the reference), with the most frequent wrong ones (false friends such as the
  Indonesian auxiliary `akan` read as the Akan language).

    .venv/bin/python benchmarks/dictionary_hints.py                  # the 4 evaluation pairs and all pairs
    .venv/bin/python benchmarks/dictionary_hints.py --pairs sw-fr,he-de

Chinese and Japanese sources are skipped (no word boundaries for the n-gram lookup). Ends with
`RESULT coverage_pct=... precision_pct=... ...` over the evaluation pairs, then over all pairs.
"""

from __future__ import annotations

import argparse
import collections
import re
from collections.abc import Sequence

from bridgex_index.words import copy_key
from index_builder.evaluation.testsets import shipped_sentences
from index_builder.indexing.dictionaries import cldr_dictionaries

EVAL_PAIRS = (("sw", "fr"), ("sw", "es"), ("ar", "fr"), ("he", "de"))  # docs/results' sentence pairs
NO_SPACES = {"ja", "zh"}
MAX_NGRAM = 3
_WORD = re.compile(r"\w+")


def keys(text: str) -> list[str]:
    """The comparison keys of a sentence's words."""
    return [copy_key(w) for w in _WORD.findall(text)]


def hints(source_keys: Sequence[str], lexicon: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(source key, translation) for every n-gram of the sentence the lexicon knows, longest first and
    without overlapping a longer hit."""
    found: list[tuple[str, str]] = []
    taken = [False] * len(source_keys)
    for n in range(MAX_NGRAM, 0, -1):
        for i in range(len(source_keys) - n + 1):
            if any(taken[i : i + n]):
                continue
            gram = " ".join(source_keys[i : i + n])
            if gram in lexicon:
                taken[i : i + n] = [True] * n
                found += [(gram, t) for t in sorted(lexicon[gram])]
    return found


def contains(words: Sequence[str], phrase: str) -> bool:
    """Whether the key sequence `words` contains `phrase` (keys joined by spaces) as a run."""
    part = phrase.split()
    return any(list(words[i : i + len(part)]) == part for i in range(len(words) - len(part) + 1))


def measure(pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    langs = sorted({code for pair in pairs for code in pair})
    dictionaries = cldr_dictionaries(langs)
    sentences = shipped_sentences(langs)
    out: dict[tuple[str, str], dict] = {}
    for s, t in pairs:
        d = dictionaries.get((s, t)) or dictionaries.get((t, s))
        lexicon: dict[str, set[str]] = collections.defaultdict(set)
        for e in d.entries if d else ():
            src, trg = (e.source_word, e.target_word) if d.source == s else (e.target_word, e.source_word)
            lexicon[copy_key(src)].add(copy_key(trg))
        rows = sentences.pair(s, t)
        with_hint, n_hints, right = 0, 0, 0
        wrong: collections.Counter[str] = collections.Counter()
        for row in rows:
            source, reference = row.source, row.target
            found = hints(keys(source), lexicon)
            with_hint += bool(found)
            ref = keys(reference)
            for gram, translation in found:
                n_hints += 1
                if contains(ref, translation):
                    right += 1
                else:
                    wrong[f"{gram}→{translation}"] += 1
        out[(s, t)] = {
            "sentences": len(rows),
            "with_hint": with_hint,
            "hints": n_hints,
            "right": right,
            "wrong": wrong.most_common(3),
        }
    return out


def pooled(rows: Sequence[dict]) -> str:
    n = sum(r["sentences"] for r in rows)
    covered = sum(r["with_hint"] for r in rows)
    hints_n = sum(r["hints"] for r in rows)
    right = sum(r["right"] for r in rows)
    precision = 100 * right / hints_n if hints_n else 0.0
    return (
        f"pairs={len(rows)} sentences={n} coverage_pct={100 * covered / max(n, 1):.1f} hints={hints_n} "
        f"precision_pct={precision:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", help="Comma-separated pairs (default: the 4 evaluation pairs, then all).")
    args = parser.parse_args()
    if args.pairs:
        chosen = [tuple(p.split("-", 1)) for p in args.pairs.split(",")]
        groups = {"pairs": chosen}
    else:
        langs = shipped_sentences().languages
        every = [(s, t) for s in langs for t in langs if s != t and s not in NO_SPACES]
        groups = {"eval": list(EVAL_PAIRS), "all": every}
    for label, pairs in groups.items():
        result = measure(pairs)
        if label != "all":
            head = f"{'sentences':>9} {'with hint':>9} {'hints':>5} {'right':>5}"
            print(f"{'pair':7} {head}  most frequent wrong")
            for (s, t), r in result.items():
                wrong = ", ".join(f"{w} ×{c}" for w, c in r["wrong"])
                counts = f"{r['sentences']:>9} {r['with_hint']:>9} {r['hints']:>5} {r['right']:>5}"
                print(f"{s}-{t:4} {counts}  {wrong}")
        print(f"RESULT set={label} {pooled(list(result.values()))}")


if __name__ == "__main__":
    main()
