"""Time `hsic_matrix` (one matrix product of flattened centred kernels) against `hsic_reference` (the
per-pair loop of n×n products the public scripts run) on the same random inputs.

    .venv/bin/python benchmarks/hsic.py --n1 100 --n2 100 --n 200 --repeats 3

The last line is `RESULT speedup=<ratio> max_abs_diff=<number>`. numpy's BLAS threads (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS, MKL_NUM_THREADS) speed up both sides' products; set them in the shell, not here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from index_builder.indexing.hsic import hsic_matrix, hsic_reference


def best_time(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Fastest wall time of `repeats` calls, and the last result."""
    best, result = float("inf"), np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=100, help="rows of X (overlap neurons in a layer)")
    parser.add_argument("--n2", type=int, default=100, help="rows of Y (bridge-specific neurons in a layer)")
    parser.add_argument("--n", type=int, default=200, help="probes (columns of X and Y)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the fastest is reported")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    args = parser.parse_args()
    if min(args.n1, args.n2, args.repeats) < 1 or args.n < 2:
        parser.error("--n1, --n2 and --repeats must be at least 1 and --n at least 2.")

    rng = np.random.default_rng(args.seed)
    x = rng.gamma(2.0, size=(args.n1, args.n))  # (n1, n): activation-like, skewed and positive
    y = np.empty((args.n2, args.n))  # (n2, n): half depend on rows of x, half are independent
    half = args.n2 // 2
    y[:half] = x[rng.integers(0, args.n1, size=half)] ** 2 + rng.normal(size=(half, args.n))
    y[half:] = rng.gamma(2.0, size=(args.n2 - half, args.n))

    threads = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    print(
        f"inputs: n1={args.n1} n2={args.n2} n={args.n}, repeats={args.repeats}, cores={os.cpu_count()}, "
        f"{', '.join(f'{k}={v}' for k, v in threads.items())}"
    )
    t_fast, fast = best_time(lambda: hsic_matrix(x, y), args.repeats)
    print(f"hsic_matrix    {t_fast * 1e3:10.1f} ms")
    t_ref, ref = best_time(lambda: hsic_reference(x, y), args.repeats)
    print(f"hsic_reference {t_ref * 1e3:10.1f} ms")
    speedup = t_ref / t_fast
    max_abs_diff = float(np.abs(fast - ref).max())
    print(
        f"speedup {speedup:.1f}x, largest |difference| {max_abs_diff:.3g} (HSIC values up to {ref.max():.3g})"
    )
    print(f"RESULT speedup={speedup:.1f} max_abs_diff={max_abs_diff:.3g}")


if __name__ == "__main__":
    main()
