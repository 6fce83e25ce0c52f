"""Gold demonstrations: word tuples that are translations of each other, from the index's probe split.

Pure: rows in, tuples out. Never model output. Two ways to align words across the languages of a prompt:

- concepts (CLDR entries): the words one concept has in S, B and T are translations of each other by
  construction. A language with two different words for one concept does not use that concept.
- triangulation (MUSE entries, concept NULL): (a, b) in D_sb, (b, c) in D_bt and (a, c) in D_st, all three
  probe entries. A word with several translations only yields triangles whose three edges are entries, so
  translations that disagree never make a demonstration. Triangles whose words each have one translation in
  every dictionary involved come first, then a stable hash order (not alphabetical: no run of "a…" words).

Never used: a word of any test entry in its language (test words are reserved for evaluation), a tuple with
two equal words after `copy_key` (a copied demonstration teaches copying), a word an earlier demonstration
already shows in the same position. Concept demonstrations come first, in the index's category preference.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence

from bridgex_index.words import copy_key

# source, target, source_word, target_word, concept, category, split: a `dictionary_entries` row
EntryRow = tuple[str, str, str, str, "str | None", "str | None", str]
Links = dict[tuple[str, str], dict[str, frozenset[str]]]  # (x, y) → word in x → its translations in y


def _stable_hash(words: Sequence[str]) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(words).encode()).digest()[:8], "big")


class Lexicon:
    """The probe-split words of an index, ready to align across any tuple of languages."""

    def __init__(self, rows: Iterable[EntryRow], category_preference: Sequence[str] = ()):
        rows = list(rows)
        reserved: set[tuple[str, str]] = set()  # (language, word) of every test entry
        for s, t, ws, wt, _concept, _category, split in rows:
            if split != "probe":
                reserved |= {(s, ws), (t, wt)}
        self.reserved = frozenset(reserved)
        by_concept: dict[str, dict[str, set[str]]] = {}  # language → concept → words
        categories: dict[str, str | None] = {}
        links: dict[tuple[str, str], dict[str, set[str]]] = {}
        for s, t, ws, wt, concept, category, split in rows:
            if split != "probe" or (s, ws) in self.reserved or (t, wt) in self.reserved:
                continue
            if concept is not None:
                by_concept.setdefault(s, {}).setdefault(concept, set()).add(ws)
                by_concept.setdefault(t, {}).setdefault(concept, set()).add(wt)
                categories.setdefault(concept, category)
            else:
                links.setdefault((s, t), {}).setdefault(ws, set()).add(wt)
                links.setdefault((t, s), {}).setdefault(wt, set()).add(ws)
        # language → concept → its one word (concepts with two words in a language are ambiguous there)
        self.concept_words: dict[str, dict[str, str]] = {
            lang: {c: next(iter(ws)) for c, ws in concepts.items() if len(ws) == 1}
            for lang, concepts in by_concept.items()
        }
        rank = {c: i for i, c in enumerate(category_preference)}
        self.concept_order: tuple[str, ...] = tuple(
            sorted(categories, key=lambda c: (rank.get(categories[c] or "", len(rank)), c))
        )
        self.links: Links = {
            pair: {w: frozenset(ts) for w, ts in words.items()} for pair, words in links.items()
        }

    def select(self, langs: Sequence[str], n: int) -> tuple[tuple[str, ...], ...]:
        """Up to `n` tuples of mutual translations, one word per language of `langs`, always the same ones."""
        out: list[tuple[str, ...]] = []
        if n <= 0 or len(langs) < 2:
            return ()
        seen: list[set[str]] = [set() for _ in langs]

        def add(words: tuple[str, ...]) -> bool:
            keys = [copy_key(w) for w in words]
            if not all(keys) or len(set(keys)) < len(keys):
                return False
            if any(k in seen[i] for i, k in enumerate(keys)):
                return False
            for i, k in enumerate(keys):
                seen[i].add(k)
            out.append(words)
            return True

        maps = [self.concept_words.get(lang, {}) for lang in langs]
        for concept in self.concept_order:
            words = tuple(m.get(concept) for m in maps)
            if None not in words and add(words) and len(out) == n:  # type: ignore[arg-type]
                return tuple(out)
        for words in self.triangulated(langs):
            if add(words) and len(out) == n:
                break
        return tuple(out)

    def triangulated(self, langs: Sequence[str]) -> list[tuple[str, ...]]:
        """Word tuples of concept-less entries in which every pair of words is a probe entry, unambiguous
        ones first, then by a stable hash."""
        first = self.links.get((langs[0], langs[1]), {})
        paths: list[tuple[str, ...]] = [(a, b) for a, bs in first.items() for b in bs]
        for i in range(2, len(langs)):
            step = self.links.get((langs[i - 1], langs[i]), {})
            paths = [(*p, c) for p in paths for c in step.get(p[-1], ())]
        pairs = list(itertools.combinations(range(len(langs)), 2))

        def closed(p: tuple[str, ...]) -> bool:
            return all(p[j] in self.links.get((langs[i], langs[j]), {}).get(p[i], ()) for i, j in pairs)

        def ambiguity(p: tuple[str, ...]) -> int:
            return sum(
                len(self.links[(langs[i], langs[j])][p[i]]) + len(self.links[(langs[j], langs[i])][p[j]]) - 2
                for i, j in pairs
            )

        return sorted((p for p in paths if closed(p)), key=lambda p: (ambiguity(p), _stable_hash(p)))
