"""The one-pass build on a tiny model: the same index as the two-pass build, resumable after an interruption,
and its stored means removed once the index is written."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from index_builder.indexing import means_store, pipeline
from index_builder.indexing.config import BuildConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TABLES = (
    "bridges",
    "layer_hsic",
    "language_neurons",
    "overlap_layers",
    "language_similarity",
    "pair_quality",
    "languages",
    "dictionary_entries",
)


def _config(model: Path, out: Path, **overrides) -> BuildConfig:
    """The authors' selector and min_set=1: a random tiny model has few language-specific neurons."""
    settings = dict(max_pairs=12, top_rate=0.1, selector="top-rate", min_set=1, batch_size=4)
    return BuildConfig(
        model=str(model), langs=["en", "de", "sw", "he"], out=out, device="cpu", **(settings | overrides)
    )


def _build(cfg: BuildConfig, log: list[str] | None = None) -> Path:
    pipeline.build_index(cfg, log=(log.append if log is not None else lambda _m: None), progress=False)
    return cfg.out


def _table(path: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def _assert_same_index(a: Path, b: Path, tolerance: float) -> None:
    """Every table row for row: text and integers equal, floats within `tolerance`."""
    for table in TABLES:
        rows_a, rows_b = _table(a, table), _table(b, table)
        assert rows_a, table
        assert len(rows_a) == len(rows_b), table
        for ra, rb in zip(rows_a, rows_b, strict=True):
            for x, y in zip(ra, rb, strict=True):
                if isinstance(x, float):
                    assert y == pytest.approx(x, abs=tolerance), (table, ra, rb)
                else:
                    assert x == y, (table, ra, rb)


@pytest.fixture(scope="module")
def two_pass(tiny_llama, tmp_path_factory) -> Path:
    return _build(_config(tiny_llama, tmp_path_factory.mktemp("two") / "two.duckdb", passes=2))


@pytest.fixture(scope="module")
def one_pass(tiny_llama, tmp_path_factory) -> Path:
    return _build(_config(tiny_llama, tmp_path_factory.mktemp("one") / "one.duckdb"))


def test_one_pass_gives_the_two_pass_index(one_pass, two_pass):
    """Same language neurons, overlaps, similarity, leg quality and bridges; HSIC equal to 1e-5 (the two-pass
    build's pass 1 batches all probes together, the one pass each pair alone, so float32 sums differ in their
    last bits)."""
    _assert_same_index(one_pass, two_pass, tolerance=1e-5)
    hsic = _table(one_pass, "layer_hsic")
    assert any(row[6] > 1e-3 for row in hsic), "HSIC scores large enough for the tolerance to mean something"


def test_float16_means_keep_the_neurons_and_bridges(tiny_llama, two_pass, tmp_path):
    half = _build(_config(tiny_llama, tmp_path / "half.duckdb", means_dtype="float16"))
    for table in ("language_neurons", "overlap_layers"):
        assert _table(half, table) == _table(two_pass, table)
    ranks = "SELECT source, target, bridge, rank FROM bridges ORDER BY ALL"
    con_a, con_b = duckdb.connect(str(half), read_only=True), duckdb.connect(str(two_pass), read_only=True)
    try:
        assert con_a.execute(ranks).fetchall() == con_b.execute(ranks).fetchall()
    finally:
        con_a.close()
        con_b.close()


def test_the_stored_means_are_removed_once_the_index_is_written(one_pass):
    assert one_pass.is_file()
    assert not means_store.default_dir(one_pass).exists()


class _Interrupt(Exception):
    pass


def _interrupting_write(monkeypatch, after: int) -> list[int]:
    """Make the store fail on its `after`-th batch write; returns the list of batch sizes written."""
    written: list[int] = []
    original = means_store.MeansStore.write

    def write(self, rows, means):
        if len(written) == after:
            raise _Interrupt
        written.append(len(rows))
        original(self, rows, means)

    monkeypatch.setattr(means_store.MeansStore, "write", write)
    return written


def test_an_interrupted_build_resumes_without_redoing_stored_batches(
    tiny_llama, one_pass, monkeypatch, tmp_path
):
    monkeypatch.setattr(means_store, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every batch
    cfg = _config(tiny_llama, tmp_path / "resumed.duckdb")
    before = _interrupting_write(monkeypatch, after=5)
    with pytest.raises(_Interrupt):
        _build(cfg)
    assert not cfg.out.exists(), "no index, not even a half-written one"
    assert any(means_store.default_dir(cfg.out).glob("rank0.state.npz"))
    monkeypatch.undo()
    monkeypatch.setattr(means_store, "CHECKPOINT_SECONDS", 0.0)
    after = _interrupting_write(monkeypatch, after=10**6)
    log: list[str] = []
    _build(cfg, log)
    assert any("resuming the pass" in line and "5 of" in line for line in log), log
    total = _table(one_pass, "pair_quality")
    probes = sum(row[2] for row in total)
    assert sum(before) + sum(after) == probes, "every probe measured exactly once over the two runs"
    _assert_same_index(cfg.out, one_pass, tolerance=0.0)
    assert not means_store.default_dir(cfg.out).exists()


def test_kept_means_rescore_without_a_forward_pass(tiny_llama, one_pass, monkeypatch, tmp_path):
    cfg = _config(tiny_llama, tmp_path / "kept.duckdb", keep_means=True)
    _build(cfg)
    assert means_store.default_dir(cfg.out).is_dir()
    written = _interrupting_write(monkeypatch, after=10**6)
    again = _config(tiny_llama, tmp_path / "kept.duckdb", keep_means=True, min_set=2)
    _build(again)
    assert written == [], "the stored pass is reused: no batch ran again"
    assert _table(again.out, "language_neurons") == _table(one_pass, "language_neurons")


def test_a_store_from_another_build_is_replaced(tiny_llama, tmp_path):
    cfg = _config(tiny_llama, tmp_path / "index.duckdb", keep_means=True)
    _build(cfg)
    log: list[str] = []
    _build(_config(tiny_llama, cfg.out, keep_means=True, max_pairs=8), log)
    assert any("from another build" in line for line in log), log
    assert not any("resuming" in line for line in log)
