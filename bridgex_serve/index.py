"""The DuckDB index, read once into memory (`BridgeIndex`); requests never touch the file.

Reloading builds a new `BridgeIndex` and the shells swap one reference, so a request sees either the old
or the new index, never a mix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from index_builder.schema import REQUIRED_TABLES, SCHEMA_VERSION

# Demonstrations come from common-noun categories first (CLDR names are mostly proper nouns).
CATEGORY_PREFERENCE = ("unit", "month", "weekday", "day", "currency", "territory", "language")


class IndexLoadError(Exception):
    """The index cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class Language:
    code: str
    prompt_name: str
    english_name: str
    low_resource: bool


@dataclass(frozen=True)
class BridgeChoice:
    bridge: str
    score: float
    probability: float
    rank: int


@dataclass
class BridgeIndex:
    path: str
    languages: dict[str, Language]
    bridges: dict[tuple[str, str], tuple[BridgeChoice, ...]]  # (source, target) → candidates by rank
    concept_words: dict[str, dict[str, str]]  # language → concept → word (probe split)
    concept_order: tuple[str, ...]  # concepts in demonstration preference order
    pair_words: dict[tuple[str, str], tuple[tuple[str, str], ...]]  # (a, b), a < b → first probe pairs
    provenance: dict[str, str] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    _demo_cache: dict = field(default_factory=dict, repr=False)
    _from_source: dict = field(default_factory=dict, repr=False)

    # -- lookups used by rewrite.plan_request ------------------------------------------------------------
    def has_language(self, code: str) -> bool:
        return code in self.languages

    def prompt_name(self, code: str) -> str:
        return self.languages[code].prompt_name

    def language_codes(self) -> list[str]:
        return sorted(self.languages)

    def low_resource(self) -> frozenset[str]:
        return frozenset(c for c, lang in self.languages.items() if lang.low_resource)

    def best_bridge(self, source: str, target: str) -> tuple[str, float] | None:
        """Rank-1 bridge of the pair; for source == target (chat in one language) the bridge with the
        highest mean probability over the source's pairs."""
        if source == target:
            if source not in self._from_source:
                totals: dict[str, list[float]] = {}
                for (s, _t), choices in self.bridges.items():
                    if s == source:
                        for c in choices:
                            totals.setdefault(c.bridge, []).append(c.probability)
                best = max(totals.items(), key=lambda kv: (sum(kv[1]) / len(kv[1]), kv[0]), default=None)
                self._from_source[source] = (best[0], sum(best[1]) / len(best[1])) if best else None
            return self._from_source[source]
        choices = self.bridges.get((source, target))
        if not choices:
            return None
        return choices[0].bridge, choices[0].probability

    def demonstrations(
        self, langs: tuple[str, ...], k: int, exclude: str | None = None
    ) -> tuple[tuple[str, ...], ...]:
        """k word tuples aligned across `langs` by concept, always the same ones (a stable prompt prefix for
        the prefix cache). Tuples in which two words are equal (copies) are skipped; so is `exclude`."""
        key = (langs, k)
        candidates = self._demo_cache.get(key)
        if candidates is None:
            candidates = self._candidates(langs, k + 1)
            self._demo_cache[key] = candidates
        excluded = (exclude or "").casefold()
        return tuple(c for c in candidates if c[0].casefold() != excluded)[:k]

    def _candidates(self, langs: tuple[str, ...], n: int) -> tuple[tuple[str, ...], ...]:
        out: list[tuple[str, ...]] = []
        maps = [self.concept_words.get(lang, {}) for lang in langs]
        if all(maps):
            for concept in self.concept_order:
                words = tuple(m.get(concept) for m in maps)
                if None in words or len({w.casefold() for w in words}) < len(words):
                    continue
                out.append(words)
                if len(out) == n:
                    return tuple(out)
        if len(langs) == 2 and len(out) < n:
            a, b = langs
            pairs = self.pair_words.get((a, b)) or tuple((y, x) for x, y in self.pair_words.get((b, a), ()))
            for words in pairs:
                if words not in out and words[0].casefold() != words[1].casefold():
                    out.append(words)
                    if len(out) == n:
                        break
        return tuple(out)

    def pairs(self) -> list[dict]:
        return [
            {
                "source": s,
                "target": t,
                "bridges": [{"bridge": c.bridge, "probability": c.probability} for c in cs],
            }
            for (s, t), cs in sorted(self.bridges.items())
        ]


def load_index(path: str | Path) -> BridgeIndex:
    """Read the whole index into memory. Raises `IndexLoadError` with a one-line message."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise IndexLoadError(f"index file not found: {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception as exc:
        raise IndexLoadError(f"{path} is not a readable DuckDB index: {_one_line(exc)}") from None
    try:
        return _read(con, path)
    except IndexLoadError:
        raise
    except Exception as exc:
        raise IndexLoadError(f"{path} is not a valid BridgeX index: {_one_line(exc)}") from None
    finally:
        con.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _read(con, path: Path) -> BridgeIndex:
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    missing = [t for t in REQUIRED_TABLES if t not in present]
    if missing:
        raise IndexLoadError(f"{path} is not a BridgeX index: missing tables {', '.join(missing)}")
    provenance = dict(con.execute("SELECT key, value FROM provenance").fetchall())
    version = provenance.get("schema_version")
    if version is not None and str(version) != str(SCHEMA_VERSION):
        raise IndexLoadError(
            f"{path} has schema version {version}; this server reads version {SCHEMA_VERSION}"
        )
    languages = {
        code: Language(code, prompt, english, bool(low))
        for code, prompt, english, low in con.execute(
            "SELECT code, prompt_name, english_name, low_resource FROM languages ORDER BY code"
        ).fetchall()
    }
    if not languages:
        raise IndexLoadError(f"{path} has no languages")
    bridges: dict[tuple[str, str], list[BridgeChoice]] = {}
    for s, t, b, score, prob, rank in con.execute(
        "SELECT source, target, bridge, score, probability, rank FROM bridges"
        " ORDER BY source, target, rank, bridge"
    ).fetchall():
        bridges.setdefault((s, t), []).append(BridgeChoice(b, float(score), float(prob), int(rank)))

    # Concept-aligned words of the probe split (test words are reserved for evaluation).
    concept_words: dict[str, dict[str, str]] = {}
    categories: dict[str, str | None] = {}
    rows = con.execute(
        """SELECT source, target, source_word, target_word, concept, category FROM dictionary_entries
           WHERE split = 'probe' AND concept IS NOT NULL
           ORDER BY concept, source, target, source_word, target_word"""
    ).fetchall()
    for s, t, sw, tw, concept, category in rows:
        concept_words.setdefault(s, {}).setdefault(concept, sw)
        concept_words.setdefault(t, {}).setdefault(concept, tw)
        categories.setdefault(concept, category)
    rank = {c: i for i, c in enumerate(CATEGORY_PREFERENCE)}
    order = tuple(sorted(categories, key=lambda c: (rank.get(categories[c] or "", len(rank)), c)))

    # A few probe pairs per language pair for direct demonstrations (MUSE entries have no concept).
    pair_words: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for s, t, sw, tw in con.execute(
        """SELECT source, target, source_word, target_word FROM (
               SELECT *, row_number() OVER (PARTITION BY source, target
                                            ORDER BY concept NULLS LAST, source_word, target_word) AS n
               FROM dictionary_entries WHERE split = 'probe') WHERE n <= 32
           ORDER BY source, target, n"""
    ).fetchall():
        pair_words.setdefault((s, t), []).append((sw, tw))
    return BridgeIndex(
        path=str(path),
        languages=languages,
        bridges={k: tuple(v) for k, v in bridges.items()},
        concept_words=concept_words,
        concept_order=order,
        pair_words={k: tuple(v) for k, v in pair_words.items()},
        provenance=provenance,
    )
