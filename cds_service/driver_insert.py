"""Inserts of plain rows, prepared in the request thread and run by the driver's cursor.

Why: in a served benchmark of the in-scope path, the group-commit writer thread cost as much CPU
as the whole decision pipeline, nearly all of it SQLAlchemy's per-statement execution (an
execution context, parameters processed row by row through it, a result set up) and the
conversion of each value (JSON above all), not SQLite; and that work ran while the writer held
the database's write lock, so the other worker processes waited for it. Here SQLAlchemy still
writes the SQL (the dialect's INSERT, ``ON CONFLICT``, casts, compiled once per dialect and column
list) and still converts every value (each bound parameter's own type processor for that
dialect, so a row is stored exactly as a Core insert would store it). The conversion happens
when a :class:`Statement` is made, in the thread of the call being recorded; the writer only
hands the ready parameters of every call in a batch to one ``executemany`` per statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table


@dataclass(frozen=True)
class Statement:
    """SQL and one parameter set per row, in the dialect's parameter style."""

    sql: str
    parameters: list[Any]


def execute_statements(connection: Connection, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in the connection's transaction: one ``executemany`` per distinct SQL,
    in the order each SQL first appears (so a call's parent rows go in before its children)."""
    grouped: dict[str, list[Any]] = {}
    for statement in statements:
        grouped.setdefault(statement.sql, []).extend(statement.parameters)
    cursor = connection.connection.cursor()
    try:
        for sql, parameters in grouped.items():
            cursor.executemany(sql, parameters)
    finally:
        cursor.close()


class DriverInsert:
    """One INSERT for ``table``: ``build`` turns the dialect's ``insert(table)`` into the
    statement (its ``ON CONFLICT``, a sub-select, ...)."""

    def __init__(self, table: Table, build: Callable[[Any], Any] = lambda insert: insert) -> None:
        self.table = table
        self.build = build
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def statement(self, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> Statement | None:
        """The statement for ``rows`` (all with the same keys, in the same order), or None."""
        if not rows:
            return None
        compiled = self._for(dialect, tuple(rows[0]))
        return Statement(compiled.sql, [compiled.parameters(row) for row in rows])

    def _for(self, dialect: Dialect, names: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, names)
        compiled = self._compiled.get(key)
        if compiled is None:
            if dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            statement = self.build(insert(self.table).inline())  # inline: no implicit RETURNING
            compiled = self._compiled.setdefault(key, _Compiled(statement, dialect, names))
        return compiled


@dataclass(frozen=True)
class Rows:
    """Rows for one :class:`DriverInsert`, not yet converted (the dialect is the database's)."""

    insert: DriverInsert
    rows: list[dict[str, Any]]

    def statement(self, dialect: Dialect) -> Statement | None:
        return self.insert.statement(dialect, self.rows)


class _Compiled:
    def __init__(self, statement: Any, dialect: Dialect, names: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(names))
        self.sql = str(compiled)
        self.names = names
        self.positional = list(compiled.positiontup) if compiled.positional else None
        self.processors = {
            name: processor for name in names
            if (processor := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def parameters(self, row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if tuple(row) != self.names:
            raise ValueError("every row of one insert must have the same columns, in the same order")
        values = dict(row)
        for name, processor in self.processors.items():  # None included, as SQLAlchemy does
            values[name] = processor(values[name])
        if self.positional is None:
            return values
        return tuple(values[name] for name in self.positional)
