"""Typological similarity of languages from lang2vec's URIEL tables (shipped in its wheel, no download).

Used by the route policy (a feature of every candidate route) and by benchmarks/index_validity.py (how well
the index's similarity follows typology). lang2vec is optional (the `validity` extra): `available()` says
whether it can be imported, and `typology` raises `TypologyError` for a language it has no code for.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence

import numpy as np

ISO3 = {  # ISO 639-1 → the URIEL code lang2vec knows (individual languages for macrolanguages)
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "id": "ind", "ar": "arb",
    "he": "heb", "ja": "jpn", "zh": "cmn", "sw": "swh", "fi": "fin", "hu": "hun", "ru": "rus", "tl": "tgl",
    "nl": "nld", "pl": "pol", "tr": "tur", "ko": "kor", "vi": "vie", "hi": "hin", "th": "tha", "uk": "ukr",
}  # fmt: skip
FEATURES = ("fam", "syntax_knn")


class TypologyError(ValueError):
    """A language lang2vec has no code for here."""


def available() -> bool:
    """Whether lang2vec (and the pkg_resources it imports) can be loaded."""
    return all(importlib.util.find_spec(m) is not None for m in ("lang2vec", "pkg_resources"))


def typology(langs: Sequence[str]) -> dict[str, dict[tuple[str, str], float]]:
    """Cosine of lang2vec feature vectors per unordered pair (a < b), one table per feature set."""
    import lang2vec.lang2vec as l2v

    missing = [c for c in langs if c not in ISO3]
    if missing:
        raise TypologyError(f"no URIEL code known for {', '.join(missing)}")
    codes = [ISO3[c] for c in langs]
    out: dict[str, dict[tuple[str, str], float]] = {}
    for feature in FEATURES:
        vecs = l2v.get_features(codes, feature)
        table: dict[tuple[str, str], float] = {}
        for a, b in itertools.combinations(sorted(langs), 2):
            va = np.array([np.nan if x == "--" else float(x) for x in vecs[ISO3[a]]])
            vb = np.array([np.nan if x == "--" else float(x) for x in vecs[ISO3[b]]])
            ok = ~(np.isnan(va) | np.isnan(vb))
            na, nb = np.linalg.norm(va[ok]), np.linalg.norm(vb[ok])
            table[(a, b)] = float(va[ok] @ vb[ok] / (na * nb)) if na and nb else 0.0
        out[feature] = table
    return out


def mean_similarity(langs: Sequence[str]) -> dict[tuple[str, str], float]:
    """Per unordered pair (a < b), the mean over FEATURES of the typological cosine."""
    tables = typology(langs)
    return {key: float(np.mean([tables[f][key] for f in FEATURES])) for key in tables[FEATURES[0]]}
