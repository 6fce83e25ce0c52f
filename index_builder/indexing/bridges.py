"""From per-layer HSIC scores to a ranked choice of bridge languages (method.md §5, last paragraph).

Bridge score(c) = mean of c's layer scores over the middle band of layers; selection probability = softmax
over candidates of the scores' z-values divided by a temperature; the best bridge is the most probable.

Pure Python and numpy: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankedBridge:
    """One candidate bridge for a (source, target) pair; rank 1 is the best."""

    bridge: str  # ISO 639-1 code
    score: float  # mean layer score over the middle band
    probability: float  # selection probability (softmax of z-scored scores / temperature)
    rank: int


def middle_band(n_layers: int, band: tuple[float, float] = (0.3, 0.7)) -> list[int]:
    """Layers ceil(lo·L) .. floor(hi·L) - 1 inclusive: 10..21 for L = 32 (the authors' choice), 6..11 for 18.

    The products are rounded to 9 decimals first, so that 0.3 × 10 counts as 3 and not 3.0000000000000004.
    When that range is empty (a shallow model or a narrow band: 0.3–0.7 of 4 layers), the band is the one
    layer at its middle depth, floor((lo + hi) / 2 · L) (layer 2 of 4), so every model has a band.
    """
    lo, hi = band
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"the number of layers must be a positive integer, got {n_layers!r}.")
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"the middle band must be fractions of depth with 0 <= lo < hi <= 1, got {band!r}.")
    first = math.ceil(round(lo * n_layers, 9))
    last = math.floor(round(hi * n_layers, 9)) - 1
    if last < first:
        return [min(n_layers - 1, math.floor(round((lo + hi) / 2 * n_layers, 9)))]
    return list(range(first, last + 1))


def bridge_scores(
    layer_scores: Mapping[str, Mapping[int, float]], band_layers: Sequence[int]
) -> dict[str, float]:
    """Mean of each candidate's layer scores over the band layers it has.

    A candidate has a layer score only where both its bridge-specific neurons and the pair's overlap have
    neurons; one with no score in the band gets no bridge score and is absent from the result.
    """
    band = set(band_layers)
    scores: dict[str, float] = {}
    for candidate, by_layer in layer_scores.items():
        values = [float(s) for layer, s in by_layer.items() if layer in band]
        if values:
            scores[candidate] = float(np.mean(values))
    return scores


def voting_scores(
    layer_results: Mapping[str, Mapping[int, tuple[float, int, int]]],
    band_layers: Sequence[int],
    min_set: int,
) -> dict[str, float]:
    """Bridge scores from (layer score, |O_st|, |S_c|) per candidate and layer, counting only the band
    layers where both sets have at least `min_set` neurons (HSIC between a handful of neurons decides
    nothing). A candidate without such a layer is absent; {} means the pair has no ranking."""
    if min_set < 1:
        raise ValueError(f"the minimum set size must be at least 1, got {min_set!r}.")
    return bridge_scores(
        {
            c: {layer: score for layer, (score, n1, n2) in by_layer.items() if min(n1, n2) >= min_set}
            for c, by_layer in layer_results.items()
        },
        band_layers,
    )


def selection_probabilities(scores: Mapping[str, float], temperature: float = 1.0) -> dict[str, float]:
    """Softmax over candidates of z-scored scores divided by `temperature`.

    One candidate gets 1.0; equal scores give a uniform distribution; no candidates give {}.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"the temperature must be a positive number, got {temperature!r}.")
    if not scores:
        return {}
    values = np.array([float(v) for v in scores.values()])  # (candidates,)
    if not np.isfinite(values).all():
        raise ValueError("bridge scores must be finite numbers.")
    std = values.std()
    z = (values - values.mean()) / std if std > 0 else np.zeros_like(values)  # (candidates,)
    logits = z / temperature
    weights = np.exp(logits - logits.max())  # (candidates,)
    probabilities = weights / weights.sum()
    return {candidate: float(p) for candidate, p in zip(scores, probabilities, strict=True)}


def rank_bridges(scores: Mapping[str, float], probabilities: Mapping[str, float]) -> list[RankedBridge]:
    """Candidates best first (highest score, equivalently most probable), ties broken by language code."""
    if set(scores) != set(probabilities):
        raise ValueError(
            f"scores and probabilities must name the same candidates, got {sorted(scores)} and "
            f"{sorted(probabilities)}."
        )
    order = sorted(scores, key=lambda c: (-scores[c], c))
    return [
        RankedBridge(bridge=c, score=float(scores[c]), probability=float(probabilities[c]), rank=rank)
        for rank, c in enumerate(order, start=1)
    ]
