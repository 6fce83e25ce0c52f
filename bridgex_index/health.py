"""Index health: does an index measure languages, or always-on neurons? Statistics and a verdict.

Pure Python and numpy on plain rows (no torch, no I/O): the builder passes its in-memory tables, the CLI and
the proxy pass rows read from an index file (`health_from_connection`). The verdict is

- `degenerate`: the index cannot tell languages or bridges apart (similarity flat across pairs, most of each
  language's neurons shared by every language, no pair ranked, or bridge sets below the minimum size);
- `weak`: it can, but a statistic misses its target (see `TARGETS`), so read its ranking with care;
- `ok`: every statistic meets its target.

Each verdict comes with the reasons that decided it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

ALWAYS_ON = 0.99  # a neuron firing on at least this share of its language's word tokens is "always on"

# Targets (issue 11) and the harder limits below which an index is called degenerate.
TARGETS = {
    "max_shared_share": 0.05,  # neurons in every language's set / the smallest set
    "min_similarity_std": 0.05,  # standard deviation of language_similarity.similarity over pairs
    "min_median_bridge_set": 20,  # median |S_c| per (pair, bridge, band layer)
    "max_rank1_share": 1 / 3,  # directed pairs whose rank-1 bridge is the most frequent one
    "max_always_on_share": 0.5,  # mean over languages of the always-on share of its set
}
DEGENERATE = {
    "max_shared_share": 0.5,
    "min_similarity_std": 0.005,
    "min_ranked_share": 0.0,  # no ranked pair at all
}


@dataclass
class HealthReport:
    """The statistics of one index and the verdict drawn from them."""

    languages: int
    set_sizes: dict[str, int]  # |N_a| per language
    always_on_share: dict[str, float]  # share of N_a with p_a >= ALWAYS_ON
    shared_by_all: int  # neurons in every language's set
    shared_share: float  # shared_by_all / min |N_a|
    similarity_mean: float | None
    similarity_std: float | None
    similarity_pairs: int  # pairs with a similarity (not NULL)
    band_overlap_median: float | None  # median |O_st| per (pair, band layer) HSIC saw
    band_bridge_median: float | None  # median |S_c| per (pair, bridge, band layer) HSIC saw
    min_set: int  # a layer votes only when both sets have at least this many neurons
    voting_share: float | None  # share of (pair, bridge, band layer) cells that vote
    pairs: int  # unordered language pairs
    ranked_pairs: int  # unordered pairs with a bridge ranking
    rank1_top: str | None  # the most frequent rank-1 bridge
    rank1_share: float | None  # its share of ranked directed pairs
    leg_pairs: int = 0  # directed pairs with a leg quality (pair_quality rows; 0 on older indexes)
    leg_top1_mean: float | None = None  # mean share of probes whose first gold token is the top-1
    leg_logprob_mean: float | None = None  # mean length-normalised gold log-prob
    leg_weakest: str | None = None  # the directed pair with the lowest top-1 share, e.g. "sw→he 0.050"
    leg_strongest: str | None = None
    verdict: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable report, one statistic a line, the verdict last."""

        def fmt(x: float | None, spec: str = ".3f") -> str:
            return "-" if x is None else format(x, spec)

        on = self.always_on_share
        out = [
            f"languages               {self.languages}",
            "set sizes |N_a|         " + " ".join(f"{c}={n}" for c, n in self.set_sizes.items()),
            f"always-on share         mean {fmt(float(np.mean(list(on.values()))) if on else None)}"
            f" (max {fmt(max(on.values()) if on else None)}; p >= {ALWAYS_ON} in the own language)",
            f"shared by every lang    {self.shared_by_all} neurons"
            f" ({fmt(self.shared_share)} of the smallest set)",
            f"similarity              mean {fmt(self.similarity_mean)} std {fmt(self.similarity_std)}"
            f" over {self.similarity_pairs} pairs",
            f"band set sizes          median overlap {fmt(self.band_overlap_median, '.1f')}, median bridge"
            f" {fmt(self.band_bridge_median, '.1f')}; min set {self.min_set}, cells voting"
            f" {fmt(self.voting_share)}",
            f"ranked pairs            {self.ranked_pairs} of {self.pairs}",
            f"rank-1 concentration    {self.rank1_top or '-'} is rank 1 for {fmt(self.rank1_share)} of ranked"
            " directed pairs",
            f"leg quality             {self.leg_pairs} directed pairs; first-token top-1 mean"
            f" {fmt(self.leg_top1_mean)} (weakest {self.leg_weakest or '-'}, strongest"
            f" {self.leg_strongest or '-'}), gold log-prob mean {fmt(self.leg_logprob_mean)}",
            f"verdict                 {self.verdict.upper()}",
        ]
        out += [f"  - {r}" for r in self.reasons]
        return out


def health_report(
    neuron_rows: Iterable[tuple[str, int, int, float]],
    languages: Sequence[str],
    similarities: Sequence[float | None],
    band_sets: Iterable[tuple[str, str, str, int, int, int]],
    rank1: Iterable[tuple[str, str, str]],
    min_set: int,
    legs: Iterable[tuple[str, str, int, float, float]] = (),
) -> HealthReport:
    """Statistics and verdict from plain rows.

    `neuron_rows`: (language, layer, neuron, p_a) of every language neuron; `languages`: every index
    language; `similarities`: language_similarity.similarity per unordered pair; `band_sets`: (source, target,
    bridge, layer, n_overlap, n_bridge) of every band layer HSIC saw (both sets non-empty); `rank1`:
    (source, target, bridge) of every directed pair's rank-1 bridge; `min_set`: the build's minimum set size;
    `legs`: (source, target, n_probes, mean_logprob, first_top1) per directed pair (reported, not judged)."""
    langs = list(languages)
    sets: dict[str, set[tuple[int, int]]] = {c: set() for c in langs}
    on: Counter[str] = Counter()
    for lang, layer, neuron, p in neuron_rows:
        if lang not in sets:
            raise ValueError(f"neuron row of language {lang!r}, which is not among {langs}")
        sets[lang].add((int(layer), int(neuron)))
        on[lang] += float(p) >= ALWAYS_ON
    sizes = {c: len(s) for c, s in sets.items()}
    always_on = {c: on[c] / sizes[c] if sizes[c] else 0.0 for c in langs}
    shared = set.intersection(*sets.values()) if sets else set()
    smallest = min(sizes.values(), default=0)
    sims = np.array([float(s) for s in similarities if s is not None])
    cells = list(band_sets)
    overlaps = {(s, t, layer): n1 for s, t, _c, layer, n1, _n2 in cells}
    band_overlap = float(np.median(list(overlaps.values()))) if overlaps else None
    band_bridge = float(np.median([c[5] for c in cells])) if cells else None
    voting = sum(1 for c in cells if c[4] >= min_set and c[5] >= min_set)
    firsts = list(rank1)
    counts = Counter(b for _s, _t, b in firsts)
    top = counts.most_common(1)[0] if counts else None
    n_pairs = len(langs) * (len(langs) - 1) // 2
    ranked = {tuple(sorted((s, t))) for s, t, _b in firsts}
    report = HealthReport(
        languages=len(langs),
        set_sizes=sizes,
        always_on_share=always_on,
        shared_by_all=len(shared),
        shared_share=len(shared) / smallest if smallest else 0.0,
        similarity_mean=float(sims.mean()) if sims.size else None,
        similarity_std=float(sims.std()) if sims.size else None,
        similarity_pairs=int(sims.size),
        band_overlap_median=band_overlap,
        band_bridge_median=band_bridge,
        min_set=min_set,
        voting_share=voting / len(cells) if cells else None,
        pairs=n_pairs,
        ranked_pairs=len(ranked),
        rank1_top=top[0] if top else None,
        rank1_share=top[1] / len(firsts) if top else None,
        **_leg_summary(list(legs)),
    )
    report.verdict, report.reasons = verdict(report)
    return report


def verdict(r: HealthReport) -> tuple[str, list[str]]:
    """('ok' | 'weak' | 'degenerate', reasons) for a report's statistics."""
    fatal: list[str] = []
    weak: list[str] = []
    if any(n == 0 for n in r.set_sizes.values()):
        fatal.append("language(s) without neurons: " + ", ".join(c for c, n in r.set_sizes.items() if n == 0))
    if r.shared_share > DEGENERATE["max_shared_share"]:
        fatal.append(
            f"{r.shared_share:.0%} of the smallest language set is shared by every language: the sets hold"
            " language-independent neurons"
        )
    elif r.shared_share > TARGETS["max_shared_share"]:
        weak.append(f"{r.shared_share:.1%} of the smallest set is shared by every language (target ≤ 5%)")
    if r.similarity_std is not None and r.similarity_pairs >= 3:
        if r.similarity_std < DEGENERATE["min_similarity_std"]:
            fatal.append(f"similarity is flat across pairs (std {r.similarity_std:.4f})")
        elif r.similarity_std < TARGETS["min_similarity_std"]:
            weak.append(f"similarity varies little across pairs (std {r.similarity_std:.3f}, target ≥ 0.05)")
    elif r.similarity_pairs == 0 and r.pairs:
        fatal.append("no pair has a similarity (every overlap is empty)")
    if r.ranked_pairs == 0:
        fatal.append(f"no pair has a bridge ranking: no band layer had sets of at least {r.min_set} neurons")
    elif r.ranked_pairs < r.pairs:
        weak.append(f"{r.pairs - r.ranked_pairs} of {r.pairs} pairs have no ranking (sets below {r.min_set})")
    if r.band_bridge_median is not None and r.band_bridge_median < TARGETS["min_median_bridge_set"]:
        weak.append(
            f"median bridge-specific set in the band is {r.band_bridge_median:g} neurons (target ≥ 20)"
        )
    if r.rank1_share is not None and r.rank1_share > TARGETS["max_rank1_share"]:
        weak.append(f"{r.rank1_top} is rank 1 for {r.rank1_share:.0%} of ranked pairs (target ≤ 1/3)")
    on = list(r.always_on_share.values())
    if on and float(np.mean(on)) > TARGETS["max_always_on_share"]:
        weak.append(f"on average {float(np.mean(on)):.0%} of a language's neurons fire on ≥99% of its tokens")
    if fatal:
        return "degenerate", fatal + weak
    if weak:
        return "weak", weak
    return "ok", ["every statistic meets its target"]


def _leg_summary(legs: Sequence[tuple[str, str, int, float, float]]) -> dict:
    """The HealthReport fields that summarise the leg-quality rows."""
    if not legs:
        return {}
    weakest = min(legs, key=lambda r: (r[4], r[3]))
    strongest = max(legs, key=lambda r: (r[4], r[3]))
    return {
        "leg_pairs": len(legs),
        "leg_top1_mean": float(np.mean([r[4] for r in legs])),
        "leg_logprob_mean": float(np.mean([r[3] for r in legs])),
        "leg_weakest": f"{weakest[0]}→{weakest[1]} {weakest[4]:.3f}",
        "leg_strongest": f"{strongest[0]}→{strongest[1]} {strongest[4]:.3f}",
    }


def health_from_tables(
    tables: Mapping[str, Mapping[str, list]], band: Sequence[int], min_set: int
) -> HealthReport:
    """The report from the builder's in-memory tables (column name → values), before they are written."""
    ln = tables["language_neurons"]
    hs = tables["layer_hsic"]
    br = tables["bridges"]
    in_band = set(band)
    return health_report(
        zip(ln["language"], ln["layer"], ln["neuron"], ln["probability"], strict=True),
        tables["languages"]["code"],
        tables["language_similarity"]["similarity"],
        (
            (s, t, c, layer, n1, n2)
            for s, t, c, layer, n1, n2 in zip(
                hs["source"],
                hs["target"],
                hs["bridge"],
                hs["layer"],
                hs["n_overlap"],
                hs["n_bridge"],
                strict=True,
            )
            if layer in in_band
        ),
        (
            (s, t, b)
            for s, t, b, rank in zip(br["source"], br["target"], br["bridge"], br["rank"], strict=True)
            if rank == 1
        ),
        min_set,
        _rows_of(tables.get("pair_quality"), ("source", "target", "n_probes", "mean_logprob", "first_top1")),
    )


def _rows_of(table: Mapping[str, list] | None, names: Sequence[str]) -> list[tuple]:
    return list(zip(*(table[n] for n in names), strict=True)) if table else []


def health_from_connection(con) -> HealthReport:
    """The report of an open index (a DuckDB connection; duck-typed so this module stays I/O-free)."""
    import json

    from . import read

    prov = dict(con.execute("SELECT key, value FROM provenance").fetchall())
    params = json.loads(prov.get("parameters", "{}"))
    band = json.loads(prov.get("middle_band_layers", "[]"))
    min_set = int(params.get("min_set", 1))
    return health_report(
        con.execute("SELECT language, layer, neuron, probability FROM language_neurons").fetchall(),
        [row.code for row in read.languages(con)],
        [r[0] for r in con.execute("SELECT similarity FROM language_similarity").fetchall()],
        con.execute(
            "SELECT source, target, bridge, layer, n_overlap, n_bridge FROM layer_hsic"
            " WHERE list_contains($1, layer)",
            [band],
        ).fetchall(),
        [(r.source, r.target, r.bridge) for r in read.bridges(con, top=1)],
        min_set,
        [tuple(r) for r in read.pair_quality(con)],
    )
