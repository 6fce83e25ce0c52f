"""The read queries both halves share: languages, ranked bridges and dictionary entries.

Each takes an open connection (`store.open_index`, which validated the file) and returns plain tuples, so
the builder's commands and the server's in-memory view read the file with one SQL text per question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import duckdb

from .store import has_table


class LanguageRow(NamedTuple):
    code: str
    prompt_name: str
    english_name: str
    low_resource: bool


class BridgeRow(NamedTuple):
    source: str
    target: str
    bridge: str
    score: float
    probability: float
    rank: int


class EntryRow(NamedTuple):
    source: str
    target: str
    source_word: str
    target_word: str
    concept: str | None
    category: str | None
    split: str


class PairQualityRow(NamedTuple):
    source: str
    target: str
    n_probes: int
    mean_logprob: float
    first_top1: float


def pair_quality(con: duckdb.DuckDBPyConnection) -> list[PairQualityRow]:
    """The model's leg quality per directed pair (empty for an index built before the table existed)."""
    if not has_table(con, "pair_quality"):
        return []
    rows = con.execute(
        "SELECT source, target, n_probes, mean_logprob, first_top1 FROM pair_quality ORDER BY source, target"
    ).fetchall()
    return [PairQualityRow(s, t, int(n), float(lp), float(top)) for s, t, n, lp, top in rows]


def languages(con: duckdb.DuckDBPyConnection) -> list[LanguageRow]:
    """Every language of the index, by code."""
    rows = con.execute(
        "SELECT code, prompt_name, english_name, low_resource FROM languages ORDER BY code"
    ).fetchall()
    return [LanguageRow(c, p, e, bool(low)) for c, p, e, low in rows]


def bridges(
    con: duckdb.DuckDBPyConnection,
    source: str | None = None,
    target: str | None = None,
    top: int | None = None,
) -> list[BridgeRow]:
    """Ranked bridge candidates, optionally of one source, one target and the best `top` per pair,
    ordered by (source, target, rank, bridge)."""
    rows = con.execute(
        "SELECT source, target, bridge, score, probability, rank FROM bridges"
        " WHERE ($1 IS NULL OR source = $1) AND ($2 IS NULL OR target = $2) AND ($3 IS NULL OR rank <= $3)"
        " ORDER BY source, target, rank, bridge",
        [source, target, top],
    ).fetchall()
    return [BridgeRow(s, t, b, float(sc), float(p), int(r)) for s, t, b, sc, p, r in rows]


def dictionary_entries(con: duckdb.DuckDBPyConnection) -> list[EntryRow]:
    """Every dictionary entry the build saw: `probe` rows make demonstrations, `test` rows are held out."""
    rows = con.execute(
        "SELECT source, target, source_word, target_word, concept, category, split FROM dictionary_entries"
    ).fetchall()
    return [EntryRow(*r) for r in rows]


def ranked_by_pair(rows: Sequence[BridgeRow]) -> dict[tuple[str, str], list[BridgeRow]]:
    """`bridges` rows grouped by (source, target), each list in rank order."""
    out: dict[tuple[str, str], list[BridgeRow]] = {}
    for row in rows:
        out.setdefault((row.source, row.target), []).append(row)
    return out
