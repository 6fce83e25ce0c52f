"""Loading the DuckDB index into memory: lookups, demonstrations, and clear failures."""

from __future__ import annotations

import duckdb
import pytest
from serve_support import write_index

from bridgex_serve.index import IndexLoadError, load_index


def test_index_loads_languages_and_both_orders_of_bridges(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    assert index.language_codes() == ["de", "en", "he", "ja", "sw"]
    assert index.prompt_name("he") == "עברית"
    assert index.low_resource() == {"he", "sw"}
    assert index.best_bridge("sw", "he") == ("en", 0.7)
    assert index.best_bridge("he", "sw") == ("en", 0.7)
    assert index.best_bridge("en", "sw") is None


def test_same_language_bridge_is_the_best_mean_over_the_source_pairs(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    bridge, probability = index.best_bridge("sw", "sw")
    assert bridge == "en" and probability == pytest.approx((0.7 + 0.9) / 2)


def test_demonstrations_are_probe_words_aligned_by_concept_in_a_stable_order(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    demos = index.demonstrations(("sw", "en", "he"), 3)
    assert demos == (
        ("kilogramu", "kilogram", "קילוגרם"),
        ("Januari", "January", "ינואר"),
        ("Februari", "February", "פברואר"),
    )
    assert index.demonstrations(("sw", "en", "he"), 3) == demos
    every = index.demonstrations(("sw", "en", "he"), 16)
    words = {w for d in every for w in d}
    assert "Machi" not in words  # test split reserved for evaluation
    assert "radio" not in words  # copies teach nothing
    assert index.demonstrations(("sw", "en", "he"), 1, exclude="kilogramu") == (
        ("Januari", "January", "ינואר"),
    )


def test_direct_demonstrations_use_the_pair(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    assert index.demonstrations(("sw", "he"), 1) == (("kilogramu", "קילוגרם"),)


def test_missing_index_is_a_one_line_error(tmp_path):
    with pytest.raises(IndexLoadError, match="index not found"):
        load_index(tmp_path / "nope.duckdb")


def test_a_file_that_is_not_duckdb_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(IndexLoadError, match="not a readable DuckDB file") as info:
        load_index(bad)
    assert "\n" not in str(info.value)


def test_a_duckdb_file_without_the_tables_is_a_clear_error(tmp_path):
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(IndexLoadError, match="missing tables"):
        load_index(path)


def test_a_newer_schema_version_is_refused(tmp_path):
    path = write_index(tmp_path / "i.duckdb")
    con = duckdb.connect(str(path))
    con.execute("UPDATE provenance SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(IndexLoadError, match="schema version 99"):
        load_index(path)
