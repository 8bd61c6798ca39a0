"""Keeping coverage assertions (found-11) and finding them by id (the shell around the DB)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from ..db import Database
from ..driver_insert import DriverInsert, Rows
from ..models import CoverageAssertionRecord
from ..storage_safety import as_datetime, storable
from .coverage_info import Assertion

_INSERT = DriverInsert(CoverageAssertionRecord.__table__)


def assertion_writer(assertions: list[Assertion], *, hook_instance: str, service_id: str,
                     client_iss: str | None, patient_id: str, crd_version: str) -> Rows:
    """The rows that keep ``assertions`` (one each), to be written in the transaction that also
    writes the call's audit record (:meth:`cds_service.audit.DatabaseRecorder.record_hook_call`)."""
    now = datetime.now(UTC)
    rows = [
        storable(CoverageAssertionRecord, {
            "assertion_id": a.assertion_id, "created_at": now, "hook_instance": hook_instance,
            "service_id": service_id, "client_iss": client_iss, "patient_id": patient_id,
            "order_ref": a.order_ref, "coverage_ref": a.coverage_ref, "policy_id": a.policy_id,
            "policy_version": a.policy_version, "decision_kind": a.decision_kind,
            "covered": a.covered, "crd_version": crd_version, "extension": a.extension,
        })
        for a in assertions
    ]
    return Rows(_INSERT, rows)


COVERAGE_ASSERTIONS = "coverage_assertions"  # spool record kind


def write_assertions(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Store assertion rows read back from the audit journal or the spool, unless their
    ``assertion_id`` is stored already (all rows of one id are written together, by one call:
    a row replayed after its transaction committed is not stored twice)."""
    table = CoverageAssertionRecord.__table__
    if connection.dialect.name == "postgresql":  # one replay at a time: check, then insert
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(742002)")
    ids = {row["assertion_id"] for row in rows}
    stored = set(connection.scalars(select(table.c.assertion_id).where(table.c.assertion_id.in_(ids)))) \
        if ids else set()
    fresh = [dict(row, created_at=as_datetime(row["created_at"])) for row in rows
             if row["assertion_id"] not in stored]
    if fresh:
        connection.execute(insert(table), fresh)


def replay_assertions(database: Database, payload: dict[str, Any]) -> None:
    with database.write_lock(), database.transaction() as connection:  # SQLite: one writer at a time
        write_assertions(connection, payload["rows"])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_dict(record: CoverageAssertionRecord) -> dict[str, Any]:
    return {
        "assertion_id": record.assertion_id,
        "created_at": _utc(record.created_at).isoformat(),  # SQLite gives it back naive; it is UTC
        "hook_instance": record.hook_instance,
        "service_id": record.service_id,
        "client_iss": record.client_iss,
        "patient_id": record.patient_id,
        "order": record.order_ref,
        "coverage": record.coverage_ref,
        "policy_id": record.policy_id,
        "policy_version": record.policy_version,
        "decision_kind": record.decision_kind,
        "covered": record.covered,
        "crd_version": record.crd_version,
        "extension": record.extension,
    }


def find_assertion(database: Database, assertion_id: str) -> list[dict[str, Any]]:
    """Every stored row for one coverage-assertion-id (one per order), oldest first."""
    with database.session() as session:
        rows = session.scalars(
            select(CoverageAssertionRecord)
            .where(CoverageAssertionRecord.assertion_id == assertion_id.strip())
            .order_by(CoverageAssertionRecord.id)
        ).all()
        return [as_dict(r) for r in rows]
