"""HSIC between the per-probe activations of two neuron sets (method.md §5).

Row x_i holds one neuron's mean activation on each of n probes. Rows are z-scored; each row gets a Gaussian
kernel over the probes, K_i(u, v) = exp(-(x_iu - x_iv)² / 2σ_i²), with σ_i the median of |x_iu - x_iv| over
probe pairs u < v; then, with H = I - 11ᵀ/n,

    HSIC_ij = tr(K_i H L_j H) / (n-1)².

H is idempotent and the kernels are symmetric, so tr(K H L H) = <HKH, L>_F: centre one side's kernels,
flatten both, and every HSIC_ij of a layer comes from one matrix product (n1, n²) @ (n², n2).
`hsic_reference` is the per-pair loop of explicit n×n products, kept for tests and the benchmark.

Because σ_i scales with the row, the kernel does not change under scaling or shifting a row; z-scoring keeps
the distances O(1) and turns constant rows into zeros. A constant row carries no information: its kernel is
all ones, HKH = 0, and its HSIC with anything is 0.

Pure numpy: no torch, no I/O.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_BYTES = 256 * 2**20  # working memory of `hsic_matrix` (kernels being built and held)
_CACHE_BYTES = 2**20  # kernels are built in blocks of about this size, which stay in a core's L2 cache


def constant_rows(x: np.ndarray) -> np.ndarray:
    """Rows whose values are all equal (exactly), as an (m,) boolean mask."""
    x = _rows(x, "x")
    return x.max(axis=1) == x.min(axis=1)  # (m,)


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its (population) standard deviation; constant rows become zeros.

    Constant rows are detected exactly (`constant_rows`), not by a variance threshold: the mean of equal
    floats may differ from them by an ulp, which would otherwise be blown up into noise.
    """
    x = _rows(x, "x")
    std = x.std(axis=1)  # (m,)
    flat = constant_rows(x) | (std == 0)  # (m,)
    std[flat] = 1.0
    z = (x - x.mean(axis=1, keepdims=True)) / std[:, None]  # (m, n)
    z[flat] = 0.0
    return z


def median_sigma(x: np.ndarray) -> np.ndarray:
    """Median heuristic per row: median of |x_iu - x_iv| over probe pairs u < v, as (m,).

    A zero median (most probes tie) falls back to the mean of the non-zero distances, and a row without any
    (a constant row) to 1.
    """
    x = _rows(x, "x")
    pairs_at = _pair_positions(x.shape[1])  # (n(n-1)/2,)
    sigmas = [_sigma(np.subtract(row[:, None], row[None, :])[None], pairs_at) for row in x]  # (1,) each
    return np.array(sigmas).reshape(-1)  # (m,)


def row_kernels(x: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """K_i(u, v) = exp(-(x_iu - x_iv)² / 2σ_i²), σ from `median_sigma`, as (m, n, n); rows used as given."""
    x = _rows(x, "x")
    return _kernels(x, dtype)  # (m, n, n)


def centred_kernels(x: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """Flattened H K_i H of the z-scored rows of x, as (m, n²): the side to compute once and reuse.

    Holds m·n² values (for n = 1,000 probes, 8 MB per row in float64); `hsic_matrix` chunks, this does not.
    """
    x = _rows(x, "x")
    return _kernels(zscore_rows(x), dtype, centre=True).reshape(x.shape[0], -1)  # (m, n*n)


def kernels_flat(y: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """Flattened (uncentred) kernels L_j of the z-scored rows of y, as (m, n²)."""
    y = _rows(y, "y")
    return _kernels(zscore_rows(y), dtype).reshape(y.shape[0], -1)  # (m, n*n)


def hsic_from_kernels(kx_centred: np.ndarray, ky: np.ndarray, n: int) -> np.ndarray:
    """HSIC from `centred_kernels(x)` (n1, n²) and `kernels_flat(y)` (n2, n²): one product, as (n1, n2)."""
    if n < 2:
        raise ValueError(f"HSIC needs at least 2 probes, got n={n}.")
    if kx_centred.ndim != 2 or ky.ndim != 2 or kx_centred.shape[1] != n * n or ky.shape[1] != n * n:
        raise ValueError(
            f"kernels must be flattened n×n matrices, (rows, {n * n}) for n={n}; got {kx_centred.shape} "
            f"and {ky.shape}."
        )
    h = kx_centred @ ky.T  # (n1, n2)
    return h.astype(np.float64) / (n - 1) ** 2


def hsic_matrix(
    x: np.ndarray,
    y: np.ndarray,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """HSIC_ij between every row of x (n1, n) and every row of y (n2, n), as (n1, n2) float64.

    Kernels are built in chunks of rows so that those being built and held, plus up to two kernels' worth
    of scratch, stay under `max_bytes` (n² values per kernel; a budget under four kernels is raised to
    four). x's chunk is centred once and multiplied with each chunk of y; y's kernels are rebuilt per x
    chunk only when they do not all fit. float32 halves the memory; its absolute error is about 1e-7
    (HSIC values are up to about 0.1), so near-zero entries lose their relative precision.
    """
    x, y = _rows(x, "x"), _rows(y, "y")
    (n1, n), (n2, n_y) = x.shape, y.shape
    if n != n_y:
        raise ValueError(f"x and y must cover the same probes: x has {n} columns, y has {n_y}.")
    if n < 2:
        raise ValueError(f"HSIC needs at least 2 probes, got n={n}.")
    zx, zy = zscore_rows(x), zscore_rows(y)  # (n1, n), (n2, n)
    out = np.empty((n1, n2), dtype=np.float64)  # (n1, n2)
    if n1 == 0 or n2 == 0:
        return out
    # Budget b in n×n kernels. Building c kernels takes c plus at most two of scratch (σ's pair distances
    # and their indices, numpy's ufunc buffers). Either all of y is held (n2) while x chunks are built
    # (c1 + 2), or a held x chunk (c1) meets y chunks being built (c2 + 2).
    b = max(max_bytes // (n * n * np.dtype(dtype).itemsize), 4)
    if n2 <= b / 2:
        c2, c1 = n2, min(n1, max(1, b - n2 - 2))
    else:
        c2 = min(n2, max(1, b // 4))
        c1 = min(n1, max(1, b - c2 - 2))
    ky_all = _kernels(zy, dtype).reshape(n2, -1) if c2 == n2 else None  # (n2, n*n)
    for i in range(0, n1, c1):
        kx = _kernels(zx[i : i + c1], dtype, centre=True).reshape(-1, n * n)  # (c1, n*n)
        for j in range(0, n2, c2):
            ky = ky_all if ky_all is not None else _kernels(zy[j : j + c2], dtype).reshape(-1, n * n)
            out[i : i + c1, j : j + c2] = hsic_from_kernels(kx, ky, n)  # (c1, c2)
            del ky
        del kx
    return out


def hsic_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """HSIC_ij = tr(K_i H L_j H) / (n-1)² by a double loop of explicit n×n products, as (n1, n2).

    Same z-scoring and σ as `hsic_matrix`; slow (three n×n products per pair), for tests and benchmarks.
    """
    x, y = _rows(x, "x"), _rows(y, "y")
    n = x.shape[1]
    if y.shape[1] != n or n < 2:
        raise ValueError(f"x and y must cover the same n ≥ 2 probes, got {x.shape} and {y.shape}.")
    kx, ky = row_kernels(zscore_rows(x)), row_kernels(zscore_rows(y))  # (n1, n, n), (n2, n, n)
    h = np.eye(n) - np.full((n, n), 1.0 / n)  # (n, n)
    out = np.empty((x.shape[0], y.shape[0]))  # (n1, n2)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = np.trace(kx[i] @ h @ ky[j] @ h) / (n - 1) ** 2
    return out


def layer_score(h: np.ndarray) -> float:
    """(mean_i max_j HSIC_ij + mean_j max_i HSIC_ij) / 2 for one layer's (n1, n2) HSIC matrix."""
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2 or h.size == 0:
        raise ValueError(f"a layer score needs a non-empty (n1, n2) HSIC matrix, got shape {h.shape}.")
    return float((h.max(axis=1).mean() + h.max(axis=0).mean()) / 2)


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (neurons, probes) matrix, got shape {arr.shape}.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no probes (shape {arr.shape}).")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite activations.")
    return arr


def _pair_positions(n: int) -> np.ndarray:
    """Flat positions of the probe pairs u < v in an n×n matrix, as (n(n-1)/2,)."""
    return np.flatnonzero(np.triu(np.ones((n, n), dtype=bool), k=1))


def _sigma(d: np.ndarray, pairs_at: np.ndarray) -> np.ndarray:
    """Median-heuristic σ per row from the (m, n, n) signed differences, as (m,) float64.

    One row at a time, so the scratch (the u < v distances, and `pairs_at` from `_pair_positions`) is
    about one n×n kernel whatever m is; the median comes from partitioning that copy in place.
    """
    m = d.shape[0]
    count = pairs_at.size
    sigma = np.ones(m)  # (m,)
    if count == 0:
        return sigma
    half = count // 2
    for i in range(m):
        pairs = d[i].ravel().take(pairs_at)  # (n(n-1)/2,)
        np.abs(pairs, out=pairs)
        pairs.partition(half)  # pairs[half] in place; everything before it is <= it
        upper = float(pairs[half])
        median = upper if count % 2 else (float(pairs[:half].max()) + upper) / 2
        if median == 0.0:
            nonzero = pairs[pairs > 0]
            median = float(nonzero.mean(dtype=np.float64)) if nonzero.size else 1.0
        sigma[i] = median
    return sigma


def _kernels(x: np.ndarray, dtype: type[np.floating], centre: bool = False) -> np.ndarray:
    """Gaussian kernels of the rows of x, (m, n, n), optionally centred (H K H).

    Built a few rows at a time so that every pass (differences, σ, square, scale, exp, centring) runs on
    data still in cache; the only large allocation is the result.
    """
    m, n = x.shape
    out = np.empty((m, n, n), dtype=dtype)  # (m, n, n)
    pairs_at = _pair_positions(n)  # (n(n-1)/2,)
    step = max(1, _CACHE_BYTES // (n * n * np.dtype(dtype).itemsize))
    for i in range(0, m, step):
        d = out[i : i + step]  # (step, n, n), a view
        np.subtract(x[i : i + step, :, None], x[i : i + step, None, :], out=d, dtype=dtype)
        scale = (-0.5 / _sigma(d, pairs_at) ** 2).astype(dtype)  # (step,)
        np.square(d, out=d)
        d *= scale[:, None, None]
        np.exp(d, out=d)
        if centre:
            _centred(d)
    return out


def _centred(k: np.ndarray) -> np.ndarray:
    """H K H for each symmetric (n, n) kernel of k (m, n, n), in place: K - r_u - r_v + mean(r).

    The kernels are exactly symmetric (x_u - x_v = -(x_v - x_u) in floating point), so the row means r are
    also the column means.
    """
    row = k.mean(axis=2)  # (m, n)
    k -= row[:, :, None]
    k -= (row - row.mean(axis=1, keepdims=True))[:, None, :]
    return k
