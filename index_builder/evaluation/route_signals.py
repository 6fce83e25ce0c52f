"""What the route policy reads from an index file: leg qualities, HSIC probabilities, neuron similarity, and
typological similarity of its languages (lang2vec, when installed)."""

from __future__ import annotations

from pathlib import Path

from .route_policy import Signals
from .typology import TypologyError, available, mean_similarity


def read_signals(path: Path, typology: bool = True) -> Signals:
    """The index's `Signals` (raises store.IndexReadError for a bad file). Typology is left empty when
    lang2vec is not installed or does not know one of the languages (`typology=False`: never read)."""
    from bridgex_index import read
    from bridgex_index.store import open_index

    con = open_index(path)
    try:
        langs = [row.code for row in read.languages(con)]
        legs = {(r.source, r.target): (r.mean_logprob, r.first_top1) for r in read.pair_quality(con)}
        hsic: dict[tuple[str, str], dict[str, float]] = {}
        for r in read.bridges(con):
            hsic.setdefault((r.source, r.target), {})[r.bridge] = r.probability
        rows = con.execute("SELECT lang_a, lang_b, similarity FROM language_similarity").fetchall()
        similarity = {(a, b): float(sim) for a, b, sim in rows if sim is not None}
    finally:
        con.close()
    typo: dict[tuple[str, str], float] = {}
    if typology and available():
        try:
            typo = mean_similarity(langs)
        except TypologyError:
            typo = {}
    return Signals(langs, legs=legs, hsic=hsic, similarity=similarity, typology=typo)
