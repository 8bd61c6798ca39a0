"""Make values safe to store and to log, identically on SQLite and PostgreSQL.

Request text reaches the database (patientId, hookInstance, order ids, codings, comments).
PostgreSQL refuses NUL in text, neither database takes a lone UTF-16 surrogate, and PostgreSQL
refuses strings longer than a ``String(n)`` column while SQLite keeps them. A value that cannot
be stored must not cost the audit row, so every row passes through :func:`storable` first:

* NUL becomes U+FFFD and lone surrogates become ``?`` (in text and inside JSON values);
* strings longer than their column are cut to the column's length.

:func:`log_safe` renders request text for a log line: control characters escaped, length capped,
so a newline in a hookInstance cannot forge a log line.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import JSON, String
from sqlalchemy.orm import DeclarativeBase

REPLACEMENT = "\ufffd"
LOG_LIMIT = 100


def as_datetime(value: datetime | str) -> datetime:
    """A datetime, or one read back from its ISO text (the spool and the audit journal hold JSON)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def storable_text(value: str, max_length: int | None = None) -> str:
    if not value.isascii() or "\x00" in value:
        value = value.replace("\x00", REPLACEMENT).encode("utf-8", "replace").decode("utf-8")
    if max_length is not None and len(value) > max_length:
        value = value[:max_length]
    return value


def storable_json(value: Any) -> Any:
    if _clean_json(value):  # the common case, checked in one pass of compiled code
        return value
    return _storable_json(value)


def _clean_json(value: Any) -> bool:
    """True when ``value`` holds only string keys and no NUL or lone surrogate: orjson refuses
    surrogates and non-string keys, and writes NUL as the escape ``\\u0000``."""
    try:
        return b"\\u0000" not in orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return False


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): _storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_json(v) for v in value]
    return value


def storable(model: type[DeclarativeBase], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` for an insert into ``model``'s table, every text and JSON column made storable."""
    kinds = _column_kinds(model)
    safe = {}
    for name, value in values.items():
        kind, length = kinds[name]
        if kind == "text" and isinstance(value, str):
            value = storable_text(value, length)
        elif kind == "json":
            value = storable_json(value)
        safe[name] = value
    return safe


@cache
def _column_kinds(model: type[DeclarativeBase]) -> dict[str, tuple[str, int | None]]:
    """Per column: ("text", its length), ("json", None) or ("other", None); read once per model."""
    kinds: dict[str, tuple[str, int | None]] = {}
    for column in model.__table__.columns:  # type: ignore[attr-defined]
        if isinstance(column.type, String):
            kinds[column.name] = ("text", column.type.length)
        elif isinstance(column.type, JSON):
            kinds[column.name] = ("json", None)
        else:
            kinds[column.name] = ("other", None)
    return kinds


def log_safe(value: object, limit: int = LOG_LIMIT) -> str:
    """Request text for a log line: one line, printable, at most ``limit`` characters."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")
