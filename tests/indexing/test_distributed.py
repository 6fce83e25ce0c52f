"""A torchrun build (2 processes, gloo, CPU) gives the same index as a single-process build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

BIN = Path(sys.executable).parent
ARGS = [
    "--langs",
    "en,de,sw,he,fr",
    "--dictionaries",
    "cldr",
    "--max-pairs",
    "12",
    "--top-rate",
    "0.05",
    # the authors' selector and every layer voting: a random tiny model has few language-specific neurons
    "--selector",
    "top-rate",
    "--min-set",
    "1",
    "--quiet",
]


def _rows(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_builds(tiny_model_factory, tmp_path_factory) -> tuple[Path, Path]:
    model = str(tiny_model_factory("gemma"))
    out = tmp_path_factory.mktemp("dist")
    single, multi = out / "single.duckdb", out / "multi.duckdb"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [BIN / "bridgex-index", "build", "--model", model, "--out", single, *ARGS], check=True, env=env
    )
    done = subprocess.run(
        [BIN / "torchrun", "--standalone", "--nproc-per-node", "2", "-m", "index_builder", "build",
         "--model", model, "--out", multi, *ARGS],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote") == 1, "only rank 0 writes and reports"
    assert not list(out.glob("*.means")), "every rank's stored means removed once the index is written"
    return single, multi


def test_torchrun_build_gives_the_same_bridges(two_builds):
    single, multi = two_builds
    sql = "SELECT source, target, bridge, rank, score, probability FROM bridges ORDER BY ALL"
    a, b = _rows(single, sql), _rows(multi, sql)
    assert a and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:4] == y[:4]
        assert x[4] == pytest.approx(y[4], rel=1e-6, abs=1e-9)
        assert x[5] == pytest.approx(y[5], rel=1e-6, abs=1e-9)


def test_torchrun_build_sums_counts_exactly(two_builds):
    single, multi = two_builds
    for sql in (
        "SELECT code, n_tokens, n_neurons FROM languages ORDER BY code",
        "SELECT language, layer, neuron, probability FROM language_neurons ORDER BY ALL",
        "SELECT * FROM language_similarity ORDER BY ALL",
    ):
        assert _rows(single, sql) == _rows(multi, sql)
    assert _rows(multi, "SELECT value FROM provenance WHERE key = 'processes'") == [("2",)]
