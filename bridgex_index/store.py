"""The DuckDB index file: written whole to a temporary file and renamed into place, read with plain SQL.

Tables are given column-wise (`{"column": [values...]}`) and inserted with one `unnest` statement per
table, which is about 100× faster than row-wise `executemany`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from .schema import OPTIONAL_TABLES, REQUIRED_TABLES, SCHEMA_VERSION, TABLES

Columns = Mapping[str, Sequence]


class IndexReadError(Exception):
    """An index file that is missing, not a DuckDB file, or not a BridgeX index of this schema."""


def columns_of(rows: Sequence[tuple], names: Sequence[str]) -> dict[str, list]:
    """Rows (tuples in `names` order) as the column-wise mapping `write_index` takes."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: Columns) -> None:
    names = list(columns)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"table {table}: columns of different lengths {sorted(lengths)}")
    if not names or lengths == {0}:
        return
    select = ", ".join(f"unnest(${i + 1}) AS {n}" for i, n in enumerate(names))
    con.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM (SELECT {select})",
        [list(v) for v in columns.values()],
    )


def write_index(path: Path, provenance: Mapping[str, str], tables: Mapping[str, Columns]) -> None:
    """Write a complete index to `path` atomically: nothing appears at `path` unless all of it was written."""
    path = Path(path)
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for ddl in TABLES.values():
                con.execute(ddl)
            rows = {**provenance, "schema_version": str(SCHEMA_VERSION)}
            _insert(con, "provenance", {"key": list(rows), "value": [str(v) for v in rows.values()]})
            for table, columns in tables.items():
                _insert(con, table, columns)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            Path(str(tmp) + ".wal").unlink()


def open_index(path: Path) -> duckdb.DuckDBPyConnection:
    """Open an index read-only, checking that it is a BridgeX index of the current schema."""
    path = Path(path)
    if not path.is_file():
        raise IndexReadError(f"index not found: {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise IndexReadError(f"{path} is not a readable DuckDB file: {str(err).splitlines()[0]}") from err
    try:
        present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        missing = [t for t in REQUIRED_TABLES if t not in present]
        if missing:
            raise IndexReadError(f"{path} is not a BridgeX index (missing tables: {', '.join(missing)})")
        row = con.execute("SELECT value FROM provenance WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = row[0] if row else "none"
            raise IndexReadError(
                f"{path} has index schema version {found}, this BridgeX reads {SCHEMA_VERSION}"
            )
    except BaseException:
        con.close()
        raise
    return con


def provenance(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM provenance ORDER BY key").fetchall())


def records(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence = ()) -> list[dict]:
    """Run a query and return rows as dicts keyed by column name."""
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


ROUTING_COLUMNS = (
    "source",
    "target",
    "decision",
    "bridge",
    "direct_accuracy",
    "bridge_accuracy",
    "n",
    "gain",
    "ci_low",
    "ci_high",
    "p_value",
    "test",
    "candidates",
    "model",
    "endpoint",
    "created_at",
    "task",
    "test_set",
)
DECISION_TASKS = ("word", "translate")  # `routing_decisions.task`: single words; sentences (chat, qa too)


def routing_decisions(con: duckdb.DuckDBPyConnection, task: str = "word") -> dict[tuple[str, str], dict]:
    """The stored routing decision of `task` per (source, target) as a dict of its columns; {} without the
    table. Rows of an index from before the `task` column are `word` decisions."""
    if task not in DECISION_TASKS:
        raise ValueError(f"task must be one of {', '.join(DECISION_TASKS)}, got {task!r}")
    if not has_table(con, "routing_decisions"):
        return {}
    present = {r[0] for r in con.execute("DESCRIBE routing_decisions").fetchall()}
    if "task" not in present and task != "word":
        return {}
    columns = ", ".join(
        c if c in present else ("'word' AS task" if c == "task" else f"NULL AS {c}") for c in ROUTING_COLUMNS
    )
    where = "WHERE task = ?" if "task" in present else ""
    rows = records(
        con,
        f"SELECT {columns} FROM routing_decisions {where} ORDER BY source, target, created_at NULLS FIRST",
        [task] if where else [],
    )
    return {(r["source"], r["target"]): r for r in rows}  # the latest row of a pair wins


def migrate_routing_decisions(con: duckdb.DuckDBPyConnection) -> None:
    """Give a `routing_decisions` table from before per-task decisions its `task` column (old rows are
    `word` decisions) and the (source, target, task) key, and one from before `test_set` that column (NULL
    on old rows); a no-op on a current or absent table. The schema version stays: an optional table."""
    if not has_table(con, "routing_decisions"):
        return
    present = [r[0] for r in con.execute("DESCRIBE routing_decisions").fetchall()]
    if "task" in present:
        con.execute("ALTER TABLE routing_decisions ADD COLUMN IF NOT EXISTS test_set VARCHAR")
        return
    kept = ", ".join(c for c in ROUTING_COLUMNS if c in present)
    con.execute("ALTER TABLE routing_decisions RENAME TO routing_decisions_before_task")
    con.execute(OPTIONAL_TABLES["routing_decisions"])
    con.execute(f"INSERT INTO routing_decisions ({kept}) SELECT {kept} FROM routing_decisions_before_task")
    con.execute("DROP TABLE routing_decisions_before_task")


def write_routing_decisions(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping]) -> None:
    """Create `routing_decisions` if needed and insert or replace one row per (source, target, task)."""
    unknown = sorted({k for r in rows for k in r} - set(ROUTING_COLUMNS))
    if unknown:
        raise ValueError(f"routing_decisions has no columns {', '.join(unknown)}")
    con.execute(OPTIONAL_TABLES["routing_decisions"])
    migrate_routing_decisions(con)
    for row in rows:
        names = [c for c in ROUTING_COLUMNS if c in row]
        con.execute(
            f"INSERT OR REPLACE INTO routing_decisions ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [row[c] for c in names],
        )


EVIDENCE_COLUMNS = ("source", "target", "task", "route", "n", "gain", "se", "test_set", "model", "created_at")
POLICY_COLUMNS = (
    "source",
    "target",
    "task",
    "route",
    "origin",
    "expected_gain",
    "sd",
    "p_gain",
    "p_loss",
    "n",
    "best",
    "best_gain",
    "created_at",
)


def _upsert(
    con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Mapping]
) -> None:
    unknown = sorted({k for r in rows for k in r} - set(columns))
    if unknown:
        raise ValueError(f"{table} has no columns {', '.join(unknown)}")
    con.execute(OPTIONAL_TABLES[table])
    for row in rows:
        names = [c for c in columns if c in row]
        con.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [row[c] for c in names],
        )


def write_route_evidence(
    con: duckdb.DuckDBPyConnection, task: str, pairs: Sequence[tuple[str, str]], rows: Sequence[Mapping]
) -> None:
    """Replace the `task` evidence of `pairs` by `rows` (one per source, target, task, route): a pair
    measured again keeps no route of its earlier measurement."""
    con.execute(OPTIONAL_TABLES["route_evidence"])
    for source, target in pairs:
        con.execute(
            "DELETE FROM route_evidence WHERE task = ? AND source = ? AND target = ?", [task, source, target]
        )
    _upsert(con, "route_evidence", EVIDENCE_COLUMNS, rows)


def route_evidence(con: duckdb.DuckDBPyConnection, task: str) -> list[dict]:
    """Every evidence row of `task` ([] without the table)."""
    if not has_table(con, "route_evidence"):
        return []
    return records(con, "SELECT * FROM route_evidence WHERE task = ? ORDER BY source, target, route", [task])


def write_route_policy(
    con: duckdb.DuckDBPyConnection, task: str, rows: Sequence[Mapping], model: str, created_at
) -> None:
    """Replace the whole policy of `task`: its rows (one per ordered pair) and its fitted model (JSON)."""
    con.execute(OPTIONAL_TABLES["route_policy"])
    con.execute(OPTIONAL_TABLES["route_policy_models"])
    con.execute("DELETE FROM route_policy WHERE task = ?", [task])
    _upsert(con, "route_policy", POLICY_COLUMNS, rows)
    con.execute(
        "INSERT OR REPLACE INTO route_policy_models (task, model, created_at) VALUES (?, ?, ?)",
        [task, model, created_at],
    )


def route_policy(con: duckdb.DuckDBPyConnection, task: str) -> dict[tuple[str, str], dict]:
    """The policy's row per (source, target) for `task` ({} without the table)."""
    if not has_table(con, "route_policy"):
        return {}
    rows = records(con, "SELECT * FROM route_policy WHERE task = ?", [task])
    return {(r["source"], r["target"]): r for r in rows}


def route_policy_model(con: duckdb.DuckDBPyConnection, task: str) -> str | None:
    """The fitted prior of `task` as stored (JSON), None when no calibration fitted one."""
    if not has_table(con, "route_policy_models"):
        return None
    row = con.execute("SELECT model FROM route_policy_models WHERE task = ?", [task]).fetchone()
    return row[0] if row else None


DISTILLED_COLUMNS = (
    "source",
    "target",
    "task",
    "position",
    "source_text",
    "target_text",
    "route",
    "model",
    "text_source",
    "created_at",
)


def write_distilled(
    con: duckdb.DuckDBPyConnection, source: str, target: str, task: str, rows: Sequence[Mapping]
) -> None:
    """Replace the distilled demonstrations of (source, target, task) by `rows` (one per position), in
    one transaction: a reader sees the old set or the new one."""
    con.execute(OPTIONAL_TABLES["distilled_demonstrations"])
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "DELETE FROM distilled_demonstrations WHERE source = ? AND target = ? AND task = ?",
            [source, target, task],
        )
        _upsert(con, "distilled_demonstrations", DISTILLED_COLUMNS, rows)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def distilled(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], list[dict]]:
    """(source, target, task) → its distilled demonstrations in position order ({} without the table)."""
    if not has_table(con, "distilled_demonstrations"):
        return {}
    out: dict[tuple[str, str, str], list[dict]] = {}
    rows = records(con, "SELECT * FROM distilled_demonstrations ORDER BY source, target, task, position", [])
    for r in rows:
        out.setdefault((r["source"], r["target"], r["task"]), []).append(r)
    return out
