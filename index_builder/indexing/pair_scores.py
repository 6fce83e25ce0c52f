"""From the two passes' numbers to scores (pure numpy): the language-neuron masks by the configured selector,
then per language pair the HSIC of every layer and the ranked bridges.

The rows `score_pair` returns are in the column order of `HSIC_COLUMNS` and `BRIDGE_COLUMNS` (the index's
`layer_hsic` and `bridges` tables).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import bridges, hsic, neurons
from .config import BuildConfig, Pair, Plan

PairResult = tuple[list[tuple], list[tuple]]  # (layer_hsic rows, bridges rows) of one pair
HSIC_COLUMNS = ("source", "target", "bridge", "layer", "n_overlap", "n_bridge", "score", "in_band")
BRIDGE_COLUMNS = ("source", "target", "bridge", "score", "probability", "rank")


def select_neurons(p: np.ndarray, mean_activation: np.ndarray, cfg: BuildConfig) -> np.ndarray:
    """(n_lang, L, I) language-neuron masks by the configured selector (top-rate ties broken by the
    language's mean activation)."""
    if cfg.selector == "specific":
        return neurons.specific_neurons(p, cfg.top_rate, cfg.min_specificity, per_layer=True)
    if cfg.selector == "lape":
        return neurons.lape_neurons(p, cfg.top_rate, cfg.filter_rate, cfg.activation_bar_ratio)
    return np.stack(
        [
            neurons.top_rate_neurons(p_a, cfg.top_rate, m_a)
            for p_a, m_a in zip(p, mean_activation, strict=True)
        ]
    )


def column_positions(columns: Sequence[np.ndarray]) -> dict[tuple[int, int], int]:
    """(layer, neuron) → its column in pass 2's per-probe means, given each layer's kept neurons in order."""
    starts = np.cumsum([0] + [len(c) for c in columns])
    return {
        (layer, int(j)): int(starts[layer]) + k for layer, js in enumerate(columns) for k, j in enumerate(js)
    }


def pair_hsic(
    means: np.ndarray,
    column: dict[tuple[int, int], int],
    overlap_mask: np.ndarray,
    bridge_masks: dict[str, np.ndarray],
    max_bytes: int,
) -> dict[str, dict[int, tuple[float, int, int]]]:
    """Per candidate and layer: (layer score, n1, n2) from the per-probe means of one pair.

    `means` is (n_probes, n_columns); `column` maps (layer, neuron) to its column.
    """
    n = means.shape[0]
    out: dict[str, dict[int, tuple[float, int, int]]] = {c: {} for c in bridge_masks}
    for layer in range(overlap_mask.shape[0]):
        xs = [column[(layer, j)] for j in np.flatnonzero(overlap_mask[layer])]
        ys = {c: [column[(layer, j)] for j in np.flatnonzero(m[layer])] for c, m in bridge_masks.items()}
        ys = {c: cols for c, cols in ys.items() if cols}
        if not xs or not ys:
            continue
        x = means[:, xs].T  # (n1, n)
        if len(xs) * n * n * 8 <= max_bytes:
            kx = hsic.centred_kernels(x)  # (n1, n*n), reused for every candidate
            for c, cols in ys.items():
                h = hsic.hsic_from_kernels(kx, hsic.kernels_flat(means[:, cols].T), n)  # (n1, n2)
                out[c][layer] = (hsic.layer_score(h), len(xs), len(cols))
        else:
            for c, cols in ys.items():
                h = hsic.hsic_matrix(x, means[:, cols].T, max_bytes=max_bytes)
                out[c][layer] = (hsic.layer_score(h), len(xs), len(cols))
    return out


def score_pair(
    pair: Pair,
    means: np.ndarray,
    column: dict[tuple[int, int], int],
    masks: np.ndarray,
    plan: Plan,
    band: Sequence[int],
    cfg: BuildConfig,
) -> PairResult:
    """HSIC per layer and ranked bridges of one pair from its per-probe means (n_probes, n_columns).

    Every layer HSIC saw is recorded with its set sizes; only band layers where both the overlap and the
    bridge-specific set have at least `cfg.min_set` neurons vote. A candidate without a voting layer is not
    ranked, and a pair where no candidate has one gets no bridge rows (the server routes it directly).
    """
    s, t = pair
    index = {c: i for i, c in enumerate(plan.langs)}
    ms, mt = masks[index[s]], masks[index[t]]
    specific = {
        c: neurons.bridge_specific(masks[index[c]], ms, mt) for c in plan.candidates if c not in (s, t)
    }
    per_layer = pair_hsic(means, column, neurons.overlap(ms, mt), specific, cfg.hsic_max_bytes)
    hsic_rows = [
        (s, t, c, layer, n1, n2, score, layer in band)
        for c, layers in per_layer.items()
        for layer, (score, n1, n2) in sorted(layers.items())
    ]
    scores = bridges.voting_scores(per_layer, band, cfg.min_set)
    bridge_rows: list[tuple] = []
    if scores:
        probs = bridges.selection_probabilities(scores, cfg.temperature)
        for r in bridges.rank_bridges(scores, probs):
            bridge_rows += [(a, b, r.bridge, r.score, r.probability, r.rank) for a, b in ((s, t), (t, s))]
    return hsic_rows, bridge_rows
