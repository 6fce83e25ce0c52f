"""BLI scoring: P@1 hits and the statistics a bridge evaluation reports.

Pure: no I/O, no database, no network. Answers and golds are compared in the one comparison form both
halves use (`bridgex_index.words.normalise_word`, also the server's copy rule): NFC, Hebrew and Arabic
vowel marks dropped, case-folded, whitespace collapsed, surrounding punctuation and quotes stripped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridgex_index.words import normalise_word as normalise


def is_hit(answer: str, golds: Iterable[str]) -> bool:
    """P@1 hit: the answer equals any gold translation after normalisation (an empty answer never hits)."""
    got = normalise(answer)
    return bool(got) and any(got == normalise(g) for g in golds)


def accuracy(hits: int, n: int) -> float:
    """Share of hits in percent (0 for an empty set)."""
    return 100.0 * hits / n if n else 0.0


# ------------------------------------------------------------------------------------------ correlations


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank (what Spearman's rho uses)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equally long sequences; None when undefined (fewer than
    three values, or one side constant, e.g. every bridge scored 0%)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs sequences of equal length, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def paired_bootstrap(
    a: Sequence[bool], b: Sequence[bool], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a − b in points over paired items, and its 95% percentile interval from resampling the
    items with replacement (fixed seed: the same interval on every run)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs equally long sequences, got {len(a)} and {len(b)}")
    if not a:
        return 0.0, 0.0, 0.0
    diffs = 100.0 * (np.asarray(a, dtype=float) - np.asarray(b, dtype=float))  # (n,)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diffs.mean()), float(low), float(high)


# --------------------------------------------------------------------------------------- pair summaries


@dataclass(frozen=True)
class Candidate:
    """One candidate bridge of a pair: the index's view (probability, rank) and the measured accuracy."""

    bridge: str
    probability: float
    rank: int
    accuracy: float
    copy_rate: float | None = None  # % of bridge renderings that copied the source word


@dataclass(frozen=True)
class PairSummary:
    """What the report says about one (source, target) pair. Accuracies in percent; None = not measured."""

    source: str
    target: str
    n: int
    direct: float | None
    english: float | None
    chosen: str | None  # the index's rank-1 bridge (None: it ranks none, its route is direct)
    bridgex: float | None
    candidates: tuple[Candidate, ...] = ()
    shots: int = 0

    @property
    def oracle(self) -> Candidate | None:
        """The measured-best candidate (ties: the one the index ranks higher)."""
        if not self.candidates:
            return None
        return max(self.candidates, key=lambda c: (c.accuracy, -c.rank))

    @property
    def oracle_decided(self) -> bool:
        """Some candidate measured better than another (with every accuracy equal there is no best)."""
        return len({c.accuracy for c in self.candidates}) > 1

    @property
    def chosen_is_oracle(self) -> bool | None:
        """The chosen bridge scores the best accuracy of all candidates (ties for the best count as best);
        None when the pair cannot decide it (no candidates, the chosen one not measured, all equal)."""
        oracle = self.oracle
        chosen = next((c for c in self.candidates if c.bridge == self.chosen), None)
        if oracle is None or chosen is None or not self.oracle_decided:
            return None
        return chosen.accuracy >= oracle.accuracy

    @property
    def chosen_measured_rank(self) -> int | None:
        """1 + the number of candidates measured strictly better than the chosen bridge."""
        chosen = next((c for c in self.candidates if c.bridge == self.chosen), None)
        if chosen is None:
            return None
        return 1 + sum(c.accuracy > chosen.accuracy for c in self.candidates)

    @property
    def rho(self) -> float | None:
        """Spearman's rho between the candidates' selection probabilities and measured accuracies."""
        if len(self.candidates) < 3:
            return None
        return spearman([c.probability for c in self.candidates], [c.accuracy for c in self.candidates])

    @property
    def candidate_mean(self) -> float | None:
        if not self.candidates:
            return None
        return sum(c.accuracy for c in self.candidates) / len(self.candidates)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclass(frozen=True)
class Overall:
    """Averages over pairs; gains are means of per-pair differences over the pairs that have both."""

    pairs: int
    direct: float | None
    english: float | None
    bridgex: float | None
    oracle: float | None
    candidate_mean: float | None
    gain_over_direct: float | None
    gain_over_english: float | None
    chosen_is_oracle: int  # pairs where the chosen bridge is (one of) the measured best
    oracle_known: int  # pairs where that could be decided (not every candidate equal)
    oracle_bridges: dict[str, int]  # bridge → pairs where it is the oracle best (ties: the higher-ranked)
    mean_rho: float | None
    rho_defined: int  # pairs with a defined rank correlation
    candidate_pairs: int = 0  # pairs where every candidate bridge was measured
    chosen_ranks: tuple[int, ...] = ()  # measured rank of the chosen bridge per pair (1 = best), sorted
    unranked: int = 0  # pairs the index ranks no bridge for: `bridgex` measured their direct route


def _gain(pairs: Sequence[PairSummary], other: str) -> float | None:
    diffs = [
        p.bridgex - getattr(p, other)
        for p in pairs
        if p.bridgex is not None and getattr(p, other) is not None
    ]
    return sum(diffs) / len(diffs) if diffs else None


def overall(pairs: Sequence[PairSummary]) -> Overall:
    """Averages and agreement counts over all pairs."""
    decided = [p.chosen_is_oracle for p in pairs if p.chosen_is_oracle is not None]
    oracles: dict[str, int] = {}
    for p in pairs:
        if p.oracle is not None and p.oracle_decided:
            oracles[p.oracle.bridge] = oracles.get(p.oracle.bridge, 0) + 1
    rhos = [p.rho for p in pairs if p.rho is not None]
    return Overall(
        pairs=len(pairs),
        direct=_mean(p.direct for p in pairs),
        english=_mean(p.english for p in pairs),
        bridgex=_mean(p.bridgex for p in pairs),
        oracle=_mean(p.oracle.accuracy if p.oracle else None for p in pairs),
        candidate_mean=_mean(p.candidate_mean for p in pairs),
        gain_over_direct=_gain(pairs, "direct"),
        gain_over_english=_gain(pairs, "english"),
        chosen_is_oracle=sum(decided),
        oracle_known=len(decided),
        oracle_bridges=dict(sorted(oracles.items(), key=lambda kv: (-kv[1], kv[0]))),
        mean_rho=sum(rhos) / len(rhos) if rhos else None,
        rho_defined=len(rhos),
        candidate_pairs=sum(1 for p in pairs if p.candidates),
        chosen_ranks=tuple(sorted(r for p in pairs if (r := p.chosen_measured_rank) is not None)),
        unranked=sum(1 for p in pairs if p.chosen is None and p.bridgex is not None),
    )


def gold_sets(entries: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Source word → every target word it is paired with (dictionary order, duplicates once)."""
    golds: dict[str, dict[str, None]] = {}
    for source_word, target_word in entries:
        golds.setdefault(source_word, {})[target_word] = None
    return {w: tuple(ts) for w, ts in golds.items()}
