"""The DuckDB index file: round trip, atomic writes, and clear errors for files that are not an index."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bridgex_index import store
from bridgex_index.schema import REQUIRED_TABLES, SCHEMA_VERSION, TABLES
from bridgex_index.store import IndexReadError, open_index, provenance, records, write_index

PROVENANCE = {"model": "tiny/ünïcode-模型", "parameters": '{"top_rate": 0.01}'}
TABLES_IN = {
    "languages": {
        "code": ["en", "he", "ja"],
        "prompt_name": ["English", "עברית", "日本語"],
        "english_name": ["English", "Hebrew", "Japanese"],
        "low_resource": [False, True, False],
        "n_tokens": [10, 2**40, 0],
        "n_neurons": [3, 2, 1],
    },
    "language_similarity": {
        "lang_a": ["en", "en", "he"],
        "lang_b": ["he", "ja", "ja"],
        "n_overlap": [2, 0, 1],
        "jaccard": [0.5, 0.0, 0.25],
        "similarity": [0.998, None, 1.0],
        "cosine": [0.5, None, -0.25],
    },
    "dictionary_entries": {
        "source": ["en", "he", "ja"],
        "target": ["he", "ja", "en"],
        "source_word": ["dog", "כלב", "日曜日"],
        "target_word": ["כלב", "犬", "Sunday"],
        "concept": [None, "x:1", "weekday:6"],
        "category": [None, None, "weekday"],
        "split": ["probe", "test", "test"],
    },
    "bridges": {
        "source": ["en", "he"],
        "target": ["he", "en"],
        "bridge": ["ja", "ja"],
        "score": [0.125, 0.125],
        "probability": [1.0, 1.0],
        "rank": [1, 1],
    },
}


def _as_rows(columns: dict[str, list]) -> list[dict]:
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _read(path: Path, table: str) -> list[dict]:
    con = open_index(path)
    try:
        return records(con, f"SELECT * FROM {table}")
    finally:
        con.close()


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def index(tmp_path) -> Path:
    path = tmp_path / "index.duckdb"
    write_index(path, PROVENANCE, TABLES_IN)
    return path


def test_round_trip_returns_the_same_rows(index):
    assert TABLES_IN
    for table, columns in TABLES_IN.items():
        rows = _read(index, table)
        assert rows, table
        assert rows == _as_rows(columns), table


def test_round_trip_keeps_types_unicode_nulls_and_booleans(index):
    languages = {r["code"]: r for r in _read(index, "languages")}
    assert languages["he"]["low_resource"] is True and languages["en"]["low_resource"] is False
    assert languages["he"]["prompt_name"] == "עברית" and languages["he"]["n_tokens"] == 2**40
    similarity = {(r["lang_a"], r["lang_b"]): r["similarity"] for r in _read(index, "language_similarity")}
    assert similarity[("en", "ja")] is None
    entries = _read(index, "dictionary_entries")
    assert [e["target_word"] for e in entries] == ["כלב", "犬", "Sunday"]
    assert entries[0]["concept"] is None and entries[0]["category"] is None


def test_provenance_round_trip_adds_the_schema_version(index):
    con = open_index(index)
    try:
        assert provenance(con) == {**PROVENANCE, "schema_version": str(SCHEMA_VERSION)}
    finally:
        con.close()


def test_every_schema_table_exists_even_when_not_given(index):
    assert _read(index, "layer_hsic") == []
    con = open_index(index)
    try:
        present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert present >= set(TABLES)


def test_write_leaves_only_the_index_in_the_directory(index):
    assert _files(index.parent) == ["index.duckdb"]


def test_a_newer_write_replaces_an_older_index(index):
    newer = {**TABLES_IN, "bridges": {k: v[:1] for k, v in TABLES_IN["bridges"].items()}}
    write_index(index, {"model": "newer"}, newer)
    assert len(_read(index, "bridges")) == 1
    assert {r["key"]: r["value"] for r in _read(index, "provenance")}["model"] == "newer"


def _fail_on_third_table(monkeypatch) -> None:
    real = store._insert
    calls: list[str] = []

    def insert(con, table, columns):
        calls.append(table)
        if len(calls) == 3:
            raise RuntimeError(f"disk full while writing {table}")
        real(con, table, columns)

    monkeypatch.setattr(store, "_insert", insert)


def test_failed_write_leaves_no_file_and_no_temp_file(tmp_path, monkeypatch):
    _fail_on_third_table(monkeypatch)
    target = tmp_path / "index.duckdb"
    with pytest.raises(RuntimeError, match="disk full"):
        write_index(target, PROVENANCE, TABLES_IN)
    assert _files(tmp_path) == []


def test_failed_write_leaves_an_older_index_untouched(index, monkeypatch):
    before = {t: _read(index, t) for t in REQUIRED_TABLES}
    old_bytes = index.read_bytes()
    _fail_on_third_table(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        write_index(index, {"model": "newer"}, TABLES_IN)
    assert _files(index.parent) == ["index.duckdb"]
    assert index.read_bytes() == old_bytes
    assert {t: _read(index, t) for t in REQUIRED_TABLES} == before


def test_columns_of_different_lengths_are_refused_without_a_file(tmp_path):
    bad = {"bridges": {**TABLES_IN["bridges"], "rank": [1]}}
    with pytest.raises(ValueError, match="bridges"):
        write_index(tmp_path / "index.duckdb", PROVENANCE, bad)
    assert _files(tmp_path) == []


def test_unknown_table_is_refused_without_a_file(tmp_path):
    with pytest.raises(ValueError, match="unknown tables"):
        write_index(tmp_path / "index.duckdb", PROVENANCE, {"bridgez": {"a": [1]}})
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------ read errors


def _read_error(path: Path) -> str:
    with pytest.raises(IndexReadError) as info:
        open_index(path)
    message = str(info.value)
    assert message and "\n" not in message
    assert str(path) in message
    return message


def test_missing_index_is_a_read_error(tmp_path):
    assert "not found" in _read_error(tmp_path / "nowhere.duckdb")


def test_a_directory_is_not_an_index(tmp_path):
    assert "not found" in _read_error(tmp_path)


def test_garbage_file_is_a_read_error_and_stays_untouched(tmp_path):
    path = tmp_path / "garbage.duckdb"
    path.write_bytes(b"this is not a database\n" * 400)
    assert "not a readable DuckDB file" in _read_error(path)
    assert path.read_bytes() == b"this is not a database\n" * 400
    assert _files(tmp_path) == ["garbage.duckdb"]


def test_empty_file_is_a_read_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    path.touch()
    _read_error(path)


def test_duckdb_file_without_the_tables_is_a_read_error(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE something (x INTEGER)")
    con.close()
    message = _read_error(path)
    assert "not a BridgeX index" in message and "bridges" in message


def test_index_missing_one_table_is_a_read_error(index):
    con = duckdb.connect(str(index))
    con.execute("DROP TABLE layer_hsic")
    con.close()
    assert "missing tables: layer_hsic" in _read_error(index)


@pytest.mark.parametrize("version", ["0", str(SCHEMA_VERSION + 1)])
def test_other_schema_version_is_a_read_error(index, version):
    con = duckdb.connect(str(index))
    con.execute("UPDATE provenance SET value = ? WHERE key = 'schema_version'", [version])
    con.close()
    message = _read_error(index)
    assert f"schema version {version}" in message and str(SCHEMA_VERSION) in message


def test_index_without_schema_version_is_a_read_error(index):
    con = duckdb.connect(str(index))
    con.execute("DELETE FROM provenance WHERE key = 'schema_version'")
    con.close()
    assert "schema version none" in _read_error(index)


def test_the_results_writer_refuses_an_unwritable_path_in_one_line(tmp_path):
    from bridgex_index.results import IndexWriteError, ResultStore

    with (
        pytest.raises(IndexWriteError, match=r"cannot open .* for writing") as info,
        ResultStore(tmp_path).connect(),
    ):
        pass
    assert "\n" not in str(info.value)
