"""Rows written through the driver's cursor are stored exactly as SQLAlchemy's Core insert stores
them, and a JSON value is made storable whichever way the fast check goes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from cds_service.db import Database
from cds_service.driver_insert import DriverInsert, execute_statements
from cds_service.models import HookCallRecord
from cds_service.storage_safety import REPLACEMENT, storable_json


def _row(key: str) -> dict:
    return {"record_key": key, "recorded_at": datetime(2026, 12, 2, 9, 30, 1, 123456, tzinfo=UTC),
            "hook_instance": "hi-1", "service_id": "iv-anesthetics-order-sign", "hook": "order-sign",
            "client_iss": None, "patient_id": "p-1", "order_ids": ["MedicationRequest/a", "ü"],
            "card_count": 1, "latency_ms": 3.25}


def test_a_row_written_by_the_driver_is_stored_as_a_core_insert_stores_it(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    database.upgrade()
    table = HookCallRecord.__table__
    driver = DriverInsert(table)
    with database.transaction() as connection:
        connection.execute(insert(table), _row("core"))
        statement = driver.statement(connection.dialect, [_row("driver")])
        execute_statements(connection, [statement])
    with database.engine.connect() as connection:
        stored = {row.record_key: row._asdict() for row in connection.execute(text("SELECT * FROM hook_call"))}
    core, by_driver = stored["core"], stored["driver"]
    for column in ("id", "record_key"):
        core.pop(column), by_driver.pop(column)
    assert by_driver == core
    with database.session() as session:  # and the ORM reads it back as written
        record = session.query(HookCallRecord).filter_by(record_key="driver").one()
        assert record.order_ids == ["MedicationRequest/a", "ü"]
        assert record.recorded_at.replace(tzinfo=UTC) == _row("x")["recorded_at"]


def test_rows_of_one_statement_must_have_the_same_columns(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    other = {k: v for k, v in _row("b").items() if k != "client_iss"}
    with pytest.raises(ValueError, match="same columns"):
        DriverInsert(HookCallRecord.__table__).statement(database.engine.dialect, [_row("a"), other])


def test_storable_json_leaves_clean_values_alone_and_cleans_the_rest():
    clean = {"card": {"detail": "ketamine \u2013 IV", "links": [{"url": "https://example.org"}]}, "n": [1, 2.5, None]}
    assert storable_json(clean) is clean  # nothing to change: not even copied
    dirty = {"a": ["x\x00y", {"b": "\ud800"}], 3: "z"}
    assert storable_json(dirty) == {"a": [f"x{REPLACEMENT}y", {"b": "?"}], "3": "z"}
    escaped_text = {"t": "a literal \\u0000 is text, not NUL"}
    assert storable_json(escaped_text) == escaped_text
