"""Language neurons and the set algebra over them (method.md §2, §3 and the S_c of §5).

A neuron is (layer l, index j) of the MLP activation `act(gate(x))`. A neuron set is a boolean mask of shape
(L, I); probabilities are float64 arrays of the same shape, one per language when stacked: (n_lang, L, I).

Pure numpy: no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def activation_probabilities(
    positive_counts: np.ndarray, token_counts: np.ndarray, languages: Sequence[str]
) -> np.ndarray:
    """p_a(l, j) = (tokens of language a with activation > 0) / (tokens of language a).

    `positive_counts` is (n_lang, L, I), `token_counts` is (n_lang,), `languages` names the rows (used only in
    error messages). A language without tokens has no estimate, so it is an error, not a row of zeros.
    """
    counts = np.asarray(positive_counts, dtype=np.float64)
    tokens = np.asarray(token_counts, dtype=np.float64)
    if counts.ndim != 3:
        raise ValueError(f"positive counts must have shape (languages, layers, neurons), got {counts.shape}.")
    if tokens.shape != (counts.shape[0],) or len(languages) != counts.shape[0]:
        raise ValueError(
            f"expected one token count and one language code per row of the positive counts "
            f"({counts.shape[0]} rows), got {tokens.shape[0] if tokens.ndim == 1 else tokens.shape} token "
            f"counts and {len(languages)} languages."
        )
    empty = [code for code, n in zip(languages, tokens, strict=True) if not n > 0]
    if empty:
        raise ValueError(
            f"no tokens of {', '.join(repr(c) for c in empty)} were seen in the probes, so its neurons "
            f"cannot be estimated: give it dictionary entries or leave it out of the index."
        )
    bad = [
        code
        for code, c, n in zip(languages, counts, tokens, strict=True)
        if not np.isfinite(c).all() or (c < 0).any() or (c > n).any()
    ]
    if bad:
        raise ValueError(
            f"activation counts of {', '.join(repr(c) for c in bad)} are not between 0 and the number of "
            f"tokens seen for that language."
        )
    return counts / tokens[:, None, None]  # (languages, layers, neurons)


def top_rate_neurons(p: np.ndarray, top_rate: float, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The top `top_rate` fraction of all L×I neurons by p, as an (L, I) mask.

    Count = max(1, round(top_rate · L · I)) (Python's round: halves go to even). Neurons with equal p are
    ordered by `tiebreak` (L, I), larger first, when given — the pipeline passes the language's mean
    activation, because in some models (Gemma 3) far more than 1% of neurons fire on every token (p = 1)
    and the choice among them must come from the data, not from the neurons' position. Remaining ties
    go by flat index (layer-major), lower first, so the result is deterministic.
    """
    p = _probabilities(p, "p", ndim=2)
    _check_rate(top_rate, "top_rate")
    count = max(1, round(top_rate * p.size))
    if tiebreak is None:
        chosen = np.argsort(-p, axis=None, kind="stable")[:count]  # (count,) flat indices
    else:
        tiebreak = np.asarray(tiebreak, dtype=np.float64)
        if tiebreak.shape != p.shape:
            raise ValueError(f"tiebreak must have the shape of p {p.shape}, got {tiebreak.shape}.")
        chosen = np.lexsort((-tiebreak.ravel(), -p.ravel()))[:count]  # p first, then tiebreak
    mask = np.zeros(p.size, dtype=bool)
    mask[chosen] = True
    return mask.reshape(p.shape)  # (layers, neurons)


def lape_neurons(
    p_all: np.ndarray, top_rate: float = 0.01, filter_rate: float = 0.95, activation_bar_ratio: float = 0.95
) -> np.ndarray:
    """Language-specific neurons by LAPE (Tang et al. 2024), as an (n_lang, L, I) mask.

    Follows the reference `identify.py` of RUCAIBox/Language-Specific-Neurons:
    1. normalise p over languages and take each neuron's entropy (an all-zero neuron has entropy 0);
    2. a neuron survives if some language's p is strictly above the `filter_rate` quantile of ALL p values
       (every language and neuron pooled; the reference takes `kthvalue(round(N · rate))`, as here);
    3. keep the lowest-entropy survivors, at most max(1, round(top_rate · L · I)) (a fraction of all neurons,
       not of the survivors); ties by flat index. Unlike the reference, which pads with filtered neurons
       when too few survive, filtered neurons are never kept;
    4. assign each kept neuron to every language whose p is strictly above the `activation_bar_ratio`
       quantile of all p values (pooled the same way), so a neuron may belong to several languages or none.
    """
    p = _probabilities(p_all, "p_all", ndim=3)
    for value, name in (
        (top_rate, "top_rate"),
        (filter_rate, "filter_rate"),
        (activation_bar_ratio, "activation_bar_ratio"),
    ):
        _check_rate(value, name)
    _, n_layers, n_neurons = p.shape
    total = p.sum(axis=0)  # (layers, neurons)
    normed = np.divide(p, total, out=np.zeros_like(p), where=total > 0)  # (languages, layers, neurons)
    logs = np.log(normed, out=np.zeros_like(normed), where=normed > 0)  # (languages, layers, neurons)
    entropy = -(normed * logs).sum(axis=0).ravel()  # (layers * neurons,)

    filter_bar, activation_bar = _kth_values(p.ravel(), (filter_rate, activation_bar_ratio))
    survivors = np.flatnonzero(p.max(axis=0).ravel() > filter_bar)  # (n_survivors,)
    count = max(1, round(top_rate * n_layers * n_neurons))
    kept = survivors[np.argsort(entropy[survivors], kind="stable")[:count]]  # (≤ count,)
    selected = np.zeros(n_layers * n_neurons, dtype=bool)
    selected[kept] = True
    return (p > activation_bar) & selected.reshape(n_layers, n_neurons)  # (languages, layers, neurons)


def specificity(p_all: np.ndarray) -> np.ndarray:
    """s_a(l, j) = p_a(l, j) − mean over the other languages of p_b(l, j), shape (n_lang, L, I).

    A neuron that fires equally often on every language (always on, or never) has s = 0 for all of them.
    """
    p = _probabilities(p_all, "p_all", ndim=3)
    n = p.shape[0]
    if n < 2:
        raise ValueError(f"specificity needs at least 2 languages, got {n}.")
    return p - (p.sum(axis=0, keepdims=True) - p) / (n - 1)  # (languages, layers, neurons)


def specific_neurons(
    p_all: np.ndarray, top_rate: float = 0.01, min_specificity: float = 0.05, per_layer: bool = True
) -> np.ndarray:
    """Language neurons by specificity (our selector), as an (n_lang, L, I) mask.

    For each language a, the neurons with the highest s_a = p_a − mean_{b≠a} p_b (`specificity`), at most
    k = max(1, round(top_rate · I)) per layer when `per_layer` (every layer, hence every band layer, gets
    neurons) or max(1, round(top_rate · L · I)) over the whole model otherwise; only neurons with
    s_a ≥ `min_specificity` qualify, so a neuron as active in the other languages (on average) is never
    kept. A neuron may belong to several languages (e.g. one that fires for a whole family). Ties go by
    flat index, lower first.
    """
    _check_rate(top_rate, "top_rate")
    if not 0.0 < min_specificity <= 1.0:
        raise ValueError(f"min_specificity must be in (0, 1], got {min_specificity!r}.")
    s = specificity(p_all)  # (languages, layers, neurons)
    n_lang, n_layers, n_neurons = s.shape
    flat = s.reshape(n_lang, n_layers, n_neurons) if per_layer else s.reshape(n_lang, 1, -1)
    k = max(1, round(top_rate * flat.shape[2]))
    order = np.argsort(-flat, axis=2, kind="stable")[:, :, :k]  # (languages, groups, k)
    chosen = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(chosen, order, True, axis=2)
    return (chosen & (flat >= min_specificity)).reshape(s.shape)


def overlap(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """O_ab = N_a ∩ N_b, an (L, I) mask."""
    a, b = _masks(mask_a, mask_b)
    return a & b  # (layers, neurons)


def jaccard(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """|N_a ∩ N_b| / |N_a ∪ N_b|; 0.0 when both sets are empty."""
    a, b = _masks(mask_a, mask_b)
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


def layer_distribution(mask: np.ndarray) -> np.ndarray:
    """Number of neurons of the set in each layer, (L,) int64."""
    (m,) = _masks(mask)
    return m.sum(axis=1, dtype=np.int64)  # (layers,)


def similarity(p_a: np.ndarray, p_b: np.ndarray, overlap_mask: np.ndarray) -> float | None:
    """Cosine between p_a and p_b restricted to the neurons of `overlap_mask` (method.md §3).

    The vectors are taken with the boolean mask itself, one entry per overlap neuron (the public script's
    list of (layer, neuron) tuples selects whole layers instead). None when the overlap is empty or either
    restricted vector is all zero.
    """
    (mask,) = _masks(overlap_mask)
    a = _probabilities(p_a, "p_a", ndim=2)
    b = _probabilities(p_b, "p_b", ndim=2)
    if a.shape != mask.shape or b.shape != mask.shape:
        raise ValueError(
            f"p_a {a.shape}, p_b {b.shape} and the overlap mask {mask.shape} must have the same shape."
        )
    va, vb = a[mask], b[mask]  # (|O|,) each
    norm_a, norm_b = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if va.size == 0 or norm_a == 0.0 or norm_b == 0.0:
        return None
    return float(va @ vb) / (norm_a * norm_b)


def profile_correlation(p_a: np.ndarray, p_b: np.ndarray) -> float | None:
    """Pearson correlation of two languages' activation probabilities over every neuron (L·I values).

    The index's pair similarity. Unlike the cosine on the overlap (`similarity`, the authors'), it is not
    pinned at 1 when the selected neurons saturate (p = 1 in both languages): centring removes what every
    neuron does on average in a language, and the value is decided by which neurons each language drives
    above or below its own mean. It reads all neurons, so it does not depend on the selector. None when
    either profile is constant.
    """
    a = _probabilities(p_a, "p_a", ndim=2).ravel()
    b = _probabilities(p_b, "p_b", ndim=2).ravel()
    if a.shape != b.shape:
        raise ValueError(f"p_a {p_a.shape} and p_b {p_b.shape} must have the same shape.")
    da, db = a - a.mean(), b - b.mean()
    norm_a, norm_b = float(np.linalg.norm(da)), float(np.linalg.norm(db))
    if norm_a == 0.0 or norm_b == 0.0:
        return None
    return float(da @ db) / (norm_a * norm_b)


def bridge_specific(mask_c: np.ndarray, mask_s: np.ndarray, mask_t: np.ndarray) -> np.ndarray:
    """S_c = N_c \\ (N_s ∪ N_t): the bridge's neurons that neither pair language has (our definition, §5)."""
    c, s, t = _masks(mask_c, mask_s, mask_t)
    return c & ~(s | t)  # (layers, neurons)


def _kth_values(values: np.ndarray, rates: Sequence[float]) -> list[float]:
    """For each rate, the k-th smallest value, k = round(len · rate) clamped to [1, len] (torch kthvalue)."""
    ks = [min(max(round(len(values) * r), 1), len(values)) - 1 for r in rates]
    part = np.partition(values, sorted(set(ks)))  # (len,)
    return [float(part[k]) for k in ks]


def _check_rate(value: float, name: str) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}.")


def _probabilities(p: np.ndarray, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != ndim:
        expected = "(layers, neurons)" if ndim == 2 else "(languages, layers, neurons)"
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: {arr.shape}.")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1].")
    return arr


def _masks(*masks: np.ndarray) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(m) for m in masks)
    for m in arrays:
        if m.dtype != np.bool_ or m.ndim != 2:
            raise ValueError(
                f"a neuron set must be a boolean mask of shape (layers, neurons), got {m.dtype} {m.shape}."
            )
    if len({m.shape for m in arrays}) > 1:
        raise ValueError(f"neuron sets of different shapes: {', '.join(str(m.shape) for m in arrays)}.")
    return arrays
