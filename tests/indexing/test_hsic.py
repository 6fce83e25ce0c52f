import itertools
import tracemalloc

import numpy as np
import pytest

from index_builder.indexing.hsic import (
    centred_kernels,
    constant_rows,
    hsic_from_kernels,
    hsic_matrix,
    hsic_reference,
    kernels_flat,
    layer_score,
    median_sigma,
    row_kernels,
    zscore_rows,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.mark.parametrize(("n1", "n2", "n"), [(1, 1, 5), (1, 7, 12), (6, 1, 9), (5, 4, 30), (3, 3, 2)])
@pytest.mark.parametrize("max_bytes", [1, 2_000, 256 * 2**20])
def test_hsic_matrix_matches_the_reference_loop(rng, n1, n2, n, max_bytes):
    x, y = rng.normal(size=(n1, n)), rng.gamma(2.0, size=(n2, n))
    np.testing.assert_allclose(
        hsic_matrix(x, y, max_bytes=max_bytes), hsic_reference(x, y), rtol=0, atol=1e-10
    )


def test_one_entry_matches_trace_of_khlh_by_brute_force(rng):
    n = 11
    x, y = rng.normal(size=(3, n)), rng.normal(size=(2, n)) ** 3

    def kernel(row: np.ndarray) -> np.ndarray:
        z = (row - row.mean()) / row.std()
        sigma = np.median([abs(z[u] - z[v]) for u, v in itertools.combinations(range(n), 2)])
        return np.array(
            [[np.exp(-((z[u] - z[v]) ** 2) / (2 * sigma**2)) for v in range(n)] for u in range(n)]
        )

    h = np.eye(n) - np.ones((n, n)) / n
    expected = np.trace(kernel(x[2]) @ h @ kernel(y[1]) @ h) / (n - 1) ** 2
    assert hsic_matrix(x, y)[2, 1] == pytest.approx(expected, rel=1e-12)


def test_dependent_rows_score_higher_than_independent_ones(rng):
    n = 150
    x = rng.normal(size=(4, n))
    dependent = x**2 + 0.1 * rng.normal(size=(4, n))  # no linear correlation, strong dependence
    independent = rng.normal(size=(4, n))
    h_dep, h_ind = hsic_matrix(x, dependent), hsic_matrix(x, independent)
    assert np.diag(h_dep).min() > 3 * h_ind.max()
    assert layer_score(h_dep) > 3 * layer_score(h_ind)


def test_hsic_is_invariant_to_scaling_and_shifting_rows(rng):
    x, y = rng.normal(size=(3, 40)), rng.normal(size=(2, 40))
    scaled = x * np.array([[1e-4], [-3.0], [250.0]]) + 7.0
    np.testing.assert_allclose(hsic_matrix(scaled, y), hsic_matrix(x, y), rtol=1e-9, atol=1e-12)


def test_constant_rows_are_zeroed_and_score_zero(rng):
    x = rng.normal(size=(3, 20))
    x[1] = 0.3  # the mean of 20 copies of 0.3 is not exactly 0.3
    np.testing.assert_array_equal(constant_rows(x), [False, True, False])
    z = zscore_rows(x)
    np.testing.assert_array_equal(z[1], 0.0)
    np.testing.assert_allclose(z[[0, 2]].mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[[0, 2]].std(axis=1), 1.0)
    np.testing.assert_allclose(hsic_matrix(x, rng.normal(size=(2, 20)))[1], 0.0, atol=1e-15)


def test_median_sigma_is_over_probe_pairs():
    x = np.array([[0.0, 1.0, 3.0], [0.0, 10.0, 10.0]])
    # Row 0: pairs 1, 3, 2 -> 2. Row 1: pairs 10, 10, 0 -> 10. Neuron-to-neuron distances would give
    # one value per probe (0, 9, 7), not one per neuron.
    np.testing.assert_array_equal(median_sigma(x), [2.0, 10.0])


def test_zero_median_falls_back_to_mean_nonzero_distance_then_one():
    x = np.array([[0.0, 0.0, 0.0, 0.0, 5.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    # Row 0: 6 zero pairs and 4 pairs of 5 -> median 0 -> mean of non-zero = 5. Row 1: no distance -> 1.
    np.testing.assert_array_equal(median_sigma(x), [5.0, 1.0])


def test_row_kernels_are_gaussian_in_probe_distance():
    x = np.array([[0.0, 1.0, 3.0]])
    k = row_kernels(x)
    assert k.shape == (1, 3, 3)
    np.testing.assert_allclose(np.diag(k[0]), 1.0)
    assert k[0, 0, 2] == pytest.approx(np.exp(-9 / 8))  # sigma 2
    np.testing.assert_allclose(k[0], k[0].T)


def test_kernel_halves_can_be_reused_across_many_y(rng):
    n = 25
    x = rng.normal(size=(4, n))
    kx = centred_kernels(x)
    assert kx.shape == (4, n * n)
    for _ in range(3):
        y = rng.normal(size=(5, n))
        np.testing.assert_allclose(hsic_from_kernels(kx, kernels_flat(y), n), hsic_matrix(x, y), atol=1e-14)


def test_float32_is_close_to_float64(rng):
    x, y = rng.normal(size=(6, 60)), rng.normal(size=(5, 60))
    h32 = hsic_matrix(x, y, dtype=np.float32)
    assert h32.dtype == np.float64
    np.testing.assert_allclose(h32, hsic_matrix(x, y), rtol=1e-3, atol=1e-6)


def test_chunking_keeps_memory_under_the_budget(rng):
    # n large enough that numpy's fixed ufunc buffers (~100 kB) are small next to one kernel (320 kB).
    n, budget = 200, 10 * 200 * 200 * 8  # ten kernels' worth
    x, y = rng.normal(size=(20, n)), rng.normal(size=(20, n))
    expected = hsic_matrix(x, y)
    tracemalloc.start()
    try:
        chunked = hsic_matrix(x, y, max_bytes=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(chunked, expected, atol=1e-14)
    assert peak < budget


def test_layer_score_averages_both_directions_of_best_matches():
    h = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    # rows: max 2, 3 -> 2.5; columns: max 3, 2, 1 -> 2.0
    assert layer_score(h) == pytest.approx(2.25)
    with pytest.raises(ValueError, match="non-empty"):
        layer_score(np.zeros((0, 3)))


def test_inputs_over_different_probes_are_rejected(rng):
    with pytest.raises(ValueError, match="same probes"):
        hsic_matrix(rng.normal(size=(2, 10)), rng.normal(size=(2, 11)))
    with pytest.raises(ValueError, match="at least 2 probes"):
        hsic_matrix(np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        hsic_matrix(np.full((1, 3), np.nan), np.ones((1, 3)))
