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

from sqlalchemy import JSON, Connection, Dialect, String, Table

from .storage_safety import storable_json, storable_text


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
        """The statement for ``rows`` (all with the same keys, in the same order), or None; every
        value of a text or JSON column is made storable (:mod:`.storage_safety`) on the way."""
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
            compiled = self._compiled.setdefault(key, _Compiled(statement, dialect, names, self.table))
        return compiled


@dataclass(frozen=True)
class Rows:
    """Rows for one :class:`DriverInsert`, not yet converted (the dialect is the database's)."""

    insert: DriverInsert
    rows: list[dict[str, Any]]

    def statement(self, dialect: Dialect) -> Statement | None:
        return self.insert.statement(dialect, self.rows)


class _Compiled:
    """The SQL for one dialect and column list, and per column what its value becomes: made
    storable (:mod:`.storage_safety`: text and JSON columns, as :func:`.storage_safety.storable`
    makes them) and then converted by the column type's own bind processor, in one pass."""

    def __init__(self, statement: Any, dialect: Dialect, names: tuple[str, ...], table: Table) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(names))
        self.sql = str(compiled)
        self.names = names
        self.positional = list(compiled.positiontup) if compiled.positional else None
        order = self.positional if self.positional is not None else list(names)
        self._steps = [
            (name, _storable_then(table.c[name].type if name in table.c else None,
                                  compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)))
            for name in order
        ]

    def parameters(self, row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if tuple(row) != self.names:
            raise ValueError("every row of one insert must have the same columns, in the same order")
        if self.positional is None:
            return {name: row[name] if convert is None else convert(row[name]) for name, convert in self._steps}
        return tuple([row[name] if convert is None else convert(row[name]) for name, convert in self._steps])


def _storable_then(column_type: Any, processor: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """What a value for a column of ``column_type`` goes through: made storable, then ``processor``
    (None, as SQLAlchemy passes it, included); None when it goes in as it is."""
    if isinstance(column_type, String):
        length = column_type.length

        def text(value: Any) -> Any:
            value = storable_text(value, length) if isinstance(value, str) else value
            return value if processor is None else processor(value)

        return text
    if isinstance(column_type, JSON):
        if processor is None:
            return storable_json
        return lambda value: processor(storable_json(value))
    return processor
