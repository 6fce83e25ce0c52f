"""The one writer of the result tables evaluation and calibration append to the index file.

`eval_answers` (the answer cache), `evaluation_runs`, `evaluations` and `routing_decisions`
(`store.write_routing_decisions`) are the optional tables of the schema: a build never writes them and a
rebuild drops them. Each write opens the file briefly (DuckDB lets one process write at a time), so a
server or `bridgex-index bridges` can still read the index between writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from .schema import OPTIONAL_MIGRATIONS, OPTIONAL_TABLES
from .store import migrate_routing_decisions


class IndexWriteError(Exception):
    """The index file cannot be opened for writing (the message is one line)."""


class ResultStore:
    """The index file as the home of the result tables; `connect()` retries while another process writes."""

    def __init__(self, path: Path, attempts: int = 20):
        self.path = Path(path)
        self.attempts = attempts
        self._created = False

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        for attempt in range(self.attempts):
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as err:  # another process holds the file: wait a little
                if attempt == self.attempts - 1:
                    raise IndexWriteError(
                        f"cannot open {self.path} for writing: {_first_line(err)}"
                    ) from None
                time.sleep(0.25)
            except duckdb.Error as err:
                raise IndexWriteError(f"cannot open {self.path} for writing: {_first_line(err)}") from None
        try:
            if not self._created:
                for ddl in (*OPTIONAL_TABLES.values(), *OPTIONAL_MIGRATIONS):
                    con.execute(ddl)
                migrate_routing_decisions(con)
                self._created = True
            yield con
        finally:
            con.close()


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def append_answers(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple]) -> None:
    """`eval_answers` rows (key, model, request, response, finish_reason, seconds); a known key is kept."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    con.execute(
        "INSERT INTO eval_answers (key, model, request, response, finish_reason, seconds, created_at)"
        " SELECT k, m, r, a, f, s, now() FROM (SELECT unnest($1) AS k, unnest($2) AS m,"
        " unnest($3) AS r, unnest($4) AS a, unnest($5) AS f, unnest($6) AS s) ON CONFLICT DO NOTHING",
        [list(c) for c in cols],
    )


def append_run(con: duckdb.DuckDBPyConnection, run: Sequence, cells: Sequence[Sequence]) -> None:
    """One `evaluation_runs` row and its `evaluations` rows, in the tables' column order."""
    con.execute(f"INSERT INTO evaluation_runs VALUES ({', '.join('?' * len(run))})", list(run))
    if cells:
        con.executemany(f"INSERT INTO evaluations VALUES ({', '.join('?' * len(cells[0]))})", list(cells))
