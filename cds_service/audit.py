"""The durable audit trail: a Recorder that writes hook calls and their cards to the database.

The EHR's call has already been answered in substance when the recorder runs, so recording
never raises into it. A row is built as plain data (:func:`hook_call_row`), made storable
(:mod:`.storage_safety`) and written idempotently (:func:`write_hook_call`, keyed by
``record_key``). When the database cannot take it, the row goes to the local spool
(:mod:`.spool`) and is written when the database is back; only when the spool fails too is a
record lost, and that is logged (type only, no PHI) and counted.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Dialect, bindparam, select

from .db import Database
from .decision import Decision
from .driver_insert import DriverInsert, Rows, Statement, execute_statements
from .ids import new_uuid
from .models import Alert, HookCallRecord
from .recording import HookCall
from .resource_index import draft_order_entries
from .spool import SpoolReplayer, is_outage
from .storage_safety import as_datetime, log_safe, storable_text

if TYPE_CHECKING:
    from .audit_journal import Journal, Segment

log = logging.getLogger(__name__)

HOOK_CALL = "hook_call"  # spool record kind


def _order_ids(call: HookCall) -> list[str]:
    ids = []
    for full_url, resource in draft_order_entries(call.request.draft_orders):
        rid = resource.get("id")
        ref = f"{resource.get('resourceType', '?')}/{rid}" if isinstance(rid, str) else full_url
        if ref:
            ids.append(ref)
    return ids


def alert_values(decision: Decision, card: dict, when: datetime) -> dict[str, Any]:
    order = decision.order
    drug = order.medication.drug
    family = decision.family
    codes = [
        {"system": m.indication.code.system, "code": m.indication.code.code,
         "display": m.indication.code.display, "source": m.indication.source, "family": m.family.id}
        for m in decision.matches
    ]
    return {
        "created_at": when,
        "card_uuid": str(card.get("uuid")),
        "order_id": order.order_ref,
        "drug": drug.id if drug else None,
        "drug_label": drug.label if drug else None,
        "route": order.route.explanation,
        "indication_codes": codes,
        "indication_family": family.id if family else None,
        "indication_family_label": family.label if family else None,
        "policy_id": decision.policy_choice.policy.id,
        "policy_section": decision.section_id,
        "decision_kind": decision.kind,
        # Repeated calls for the same order and decision form one alert on the review page.
        "group_key": Alert.key_for(order.order_ref, drug.id if drug else None, decision.policy_choice.policy.id,
                                   decision.section_id, family.id if family else None, decision.kind),
        "summary": str(card.get("summary", ""))[:300],
        "indicator": str(card.get("indicator", "")),
        "card": card,
    }


def hook_call_row(call: HookCall, now: datetime, record_key: str) -> dict[str, Any]:
    """The audit record of one call as plain data (JSON-able apart from the datetimes)."""
    return {
        "record_key": record_key,
        "recorded_at": now,
        "hook_instance": call.request.hook_instance,
        "service_id": call.service.id,
        "hook": call.request.hook,
        "client_iss": call.client_iss,
        "patient_id": call.request.patient_id,
        "order_ids": _order_ids(call),
        "card_count": len(call.evaluation.cards),
        "latency_ms": round(call.latency_ms, 2),
        "alerts": [alert_values(d, card, now) for d, card in call.evaluation.carded_decisions()],
    }


_CALLS = HookCallRecord.__table__
# Both inserts are idempotent: a record replayed from the spool twice is stored once. An alert
# finds its call by record_key (a sub-select), so no id has to come back from the database.
_INSERT_CALL = DriverInsert(_CALLS, lambda insert: insert.on_conflict_do_nothing(index_elements=["record_key"]))
_INSERT_ALERT = DriverInsert(Alert.__table__, lambda insert: insert.values(
    hook_call_id=select(_CALLS.c.id).where(_CALLS.c.record_key == bindparam("call_record_key")).scalar_subquery(),
).on_conflict_do_nothing(index_elements=["card_uuid"]))


def hook_call_statements(dialect: Dialect, row: dict[str, Any]) -> list[Statement]:
    """The inserts of one call and its alerts, parameters made storable and converted for
    ``dialect`` (by :class:`.driver_insert.DriverInsert`)."""
    call = {k: v for k, v in row.items() if k != "alerts"}
    call["recorded_at"] = as_datetime(call["recorded_at"])
    # The key an alert finds its call by, made storable as the call's own record_key column is.
    key = call["record_key"]
    call_key = storable_text(key, _CALLS.c.record_key.type.length) if isinstance(key, str) else key
    alerts = [{"call_record_key": call_key, **alert, "created_at": as_datetime(alert["created_at"])}
              for alert in row["alerts"]]
    statements = [_INSERT_CALL.statement(dialect, [call]), _INSERT_ALERT.statement(dialect, alerts)]
    return [statement for statement in statements if statement is not None]


def write_hook_call(connection: Connection, row: dict[str, Any]) -> None:
    """Insert one call and its alerts unless ``record_key`` is already stored."""
    execute_statements(connection, hook_call_statements(connection.dialect, row))


def replay_hook_call(database: Database, row: dict[str, Any]) -> None:
    with database.transaction() as connection:
        write_hook_call(connection, row)


def write_journal_record(connection: Connection, record: dict[str, Any]) -> None:
    """One line of the audit journal: the call's audit row and its coverage assertions."""
    from .crd.store import write_assertions

    if record.get("call") is not None:
        write_hook_call(connection, record["call"])
    if record.get("assertions"):
        write_assertions(connection, record["assertions"])


def replay_journal(database: Database, replayer: SpoolReplayer | None, records: list[dict[str, Any]]) -> None:
    """Store the lines of a journal file left by a process that stopped (idempotent): all in one
    transaction, or, when that fails, each in its own, a line the database refuses going to the
    spool. Raises when a line can be neither stored nor spooled (the file is then kept)."""
    try:
        with database.write_lock(), database.transaction() as connection:
            for record in records:
                write_journal_record(connection, record)
        return
    except Exception as exc:
        log.error("audit journal replay failed (%s); storing its records one by one", type(exc).__name__)
    unkept = 0
    for record in records:
        try:
            with database.write_lock(), database.transaction() as connection:
                write_journal_record(connection, record)
        except Exception as exc:
            if is_outage(exc):  # the database is away: keep the whole file for the next start
                raise
            if replayer is None or not _spool_record(replayer, record):
                unkept += 1
                log.error("audit journal record not stored: %s", type(exc).__name__)
    if unkept:
        raise RuntimeError(f"{unkept} audit journal record(s) could be neither stored nor spooled")


def _spool_record(replayer: SpoolReplayer, record: dict[str, Any]) -> bool:
    """Keep a journal record's parts in the spool; True when every part was kept."""
    from .crd.store import COVERAGE_ASSERTIONS

    kept = True
    if record.get("call") is not None:
        kept = replayer.keep(HOOK_CALL, record["call"]) and kept
    if record.get("assertions"):
        kept = replayer.keep(COVERAGE_ASSERTIONS, {"rows": record["assertions"]}) and kept
    return kept


def _assertions_not_kept(exc: Exception, call: HookCall) -> bool:
    """Nothing of the call was written: logged (type only), and False for the caller."""
    log.error("coverage assertions not kept (%s); coverage information withheld (hookInstance=%s)",
              type(exc).__name__, log_safe(call.request.hook_instance))
    return False


_JOURNALED: weakref.WeakSet[DatabaseRecorder] = weakref.WeakSet()


@atexit.register
def settle_journals() -> None:
    """When a process stops (at exit; a served worker calls it itself), what it answered goes to
    the database, so its journal file can go (what does not make it in time stays in the file,
    for the next start)."""
    for recorder in list(_JOURNALED):
        recorder.database.writer.settle(timeout=5.0)
        recorder.journal.close()


class DatabaseRecorder:
    """Writes a hook call and one Alert per card in a single transaction, or spools them."""

    def __init__(self, database: Database, *, all_calls: bool = False,
                 replayer: SpoolReplayer | None = None, journal: Journal | None = None,
                 max_pending: int = 1_000) -> None:
        self.database = database
        self.all_calls = all_calls
        self.replayer = replayer
        # With a journal, a call is answered once its records are in it (audit_journal.py);
        # without one, or with ``max_pending`` writes already waiting, once they have committed.
        self.journal = journal
        self.max_pending = max_pending
        if journal is not None:
            _JOURNALED.add(self)
        # Per process; see docs/review.md. failures: database writes that failed;
        # spooled: of those, kept in the spool for replay; lost: neither written nor spooled.
        self.failures = 0
        self.spooled = 0
        self.lost = 0
        self._lock = threading.Lock()

    def record_hook_call(self, call: HookCall, also: Rows | None = None) -> bool:
        """See :class:`cds_service.recording.Recorder`: one group-committed transaction for the
        audit row and ``also``; never raises into the EHR's call."""
        dialect = self.database.engine.dialect
        row, works = None, []
        if call.evaluation.cards or self.all_calls:
            try:
                row = hook_call_row(call, datetime.now(UTC), new_uuid())
                works = hook_call_statements(dialect, row)
            except Exception as exc:  # never fail the EHR's call
                row, works = None, []
                self._count_lost(exc, call)
        if also is not None:
            try:
                kept = also.statement(dialect)
            except Exception as exc:
                return _assertions_not_kept(exc, call)
            works = [kept, *works] if kept is not None else works
        if not works:
            return False
        if self.journal is not None and self.database.writer.pending() < self.max_pending:
            record = {"call": row, "assertions": also.rows if also is not None else []}
            try:
                segment = self.journal.append(record)
            except Exception as exc:  # a full disk, say: the call waits for the database instead
                log.error("audit journal write failed (%s); writing to the database before answering",
                          type(exc).__name__)
            else:
                self.database.writer.submit(*works, on_done=partial(self._journaled, segment, record,
                                                                    call.request.hook_instance))
                return True
        try:
            self.database.writer.run(*works)
        except Exception as exc:
            if also is not None:  # an assertion that cannot be kept is not given (found-11)
                return _assertions_not_kept(exc, call)  # the caller records the answer it gives instead
            self._spool(row, exc, call)  # (row is set: with neither row nor ``also`` nothing is written)
            return False
        if self.replayer is not None:
            self.replayer.after_success()
        return True

    def _journaled(self, segment: Segment, record: dict[str, Any], hook_instance: str,
                   error: BaseException | None) -> None:
        """The writer thread's word on a journaled call: committed, or to the spool."""
        if error is None:
            self.journal.committed(segment)
            if self.replayer is not None:
                self.replayer.after_success()
            return
        from .metrics import count_audit_write_failure

        count_audit_write_failure()
        kept = self.replayer is not None and _spool_record(self.replayer, record)
        if kept:  # else the line stays in the journal, stored when the next process starts
            self.journal.committed(segment)
        with self._lock:
            self.failures += 1
            self.spooled += kept
        log.error("audit record failed: %s (hookInstance=%s, failures=%d, %s)",
                  type(error).__name__, log_safe(hook_instance), self.failures,
                  "kept in the spool for replay" if kept else "kept in the audit journal until the next start")

    def _spool(self, row: dict[str, Any], exc: Exception, call: HookCall) -> None:
        """The database refused or failed the row: keep it in the spool for replay, count it."""
        kept = self.replayer is not None and self.replayer.keep(HOOK_CALL, row)
        from .metrics import count_audit_write_failure  # not at import time: see cds_service.metrics
        count_audit_write_failure()
        with self._lock:
            self.failures += 1
            self.spooled += kept
            self.lost += not kept
        log.error("audit record failed: %s (hookInstance=%s, failures=%d, %s)",
                  type(exc).__name__, log_safe(call.request.hook_instance), self.failures,
                  "kept in the spool for replay" if kept else "record lost")

    def _count_lost(self, exc: Exception, call: HookCall) -> None:
        with self._lock:
            self.failures += 1
            self.lost += 1
        log.error("audit record failed: %s (hookInstance=%s, failures=%d, record lost)",
                  type(exc).__name__, log_safe(call.request.hook_instance), self.failures)
