"""Audit rows of concurrent calls are written in shared transactions, each call answered only
once its row is committed; a row the database refuses fails only its own call."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import pytest
from sqlalchemy import func, select

from cds_service.audit import write_hook_call
from cds_service.group_commit import GroupCommitWriter, _Pending
from cds_service.models import HookCallRecord

from .review_support import call, hook_request


def _count(app) -> int:
    with app.extensions["cds"].database.session() as session:
        return session.scalar(select(func.count()).select_from(HookCallRecord))


def _row(key: str, **changes) -> dict:
    row = {"record_key": key, "recorded_at": datetime.now(UTC), "hook_instance": f"hi-{key}",
           "service_id": "iv-anesthetics-order-sign", "hook": "order-sign", "client_iss": None,
           "patient_id": "p", "order_ids": [], "card_count": 0, "latency_ms": 1.0, "alerts": []}
    return {**row, **changes}


def test_every_concurrent_call_is_recorded_before_it_is_answered(storage_app):
    answered: list[int] = []
    errors: list[BaseException] = []

    def one_client() -> None:
        client = storage_app.test_client()
        try:
            for _ in range(5):
                assert len(call(client, hook_request())) == 1
                answered.append(_count(storage_app))  # the row is there when the answer comes
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert _count(storage_app) == 40
    assert min(answered) >= 1 and storage_app.extensions["cds"].recorder.failures == 0


@dataclass
class HeldWriter:
    """A writer whose batches each wait for ``gate``, on a database that counts its transactions."""

    writer: GroupCommitWriter
    transactions: list[int] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    first_in_flight: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def held_writer(storage_app, monkeypatch) -> HeldWriter:
    database = storage_app.extensions["cds"].database
    held = HeldWriter(GroupCommitWriter(database))
    original_transaction, original_batch = database.transaction, held.writer._write_batch

    def counting_transaction():
        held.transactions.append(1)
        return original_transaction()

    def held_batch(batch):  # the first batch waits until the test has queued the rest behind it
        held.first_in_flight.set()
        assert held.gate.wait(30)
        original_batch(batch)

    monkeypatch.setattr(database, "transaction", counting_transaction)
    monkeypatch.setattr(held.writer, "_write_batch", held_batch)
    return held


def test_rows_waiting_together_share_one_transaction(storage_app, held_writer):
    writer, transactions = held_writer.writer, held_writer.transactions
    gate, first_in_flight = held_writer.gate, held_writer.first_in_flight
    threads = [threading.Thread(target=writer.run, args=(partial(write_hook_call, row=_row(f"k{i}")),))
               for i in range(6)]
    threads[0].start()
    assert first_in_flight.wait(30)  # k0 alone is being written
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 30
    while len(writer._queue) < 5 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert len(writer._queue) == 5
    gate.set()
    for thread in threads:
        thread.join(30)
    assert len(transactions) == 2  # the first row alone, then the five that queued behind it
    assert _count(storage_app) == 6


def test_a_backlog_of_hundreds_of_submitted_writes_is_committed_in_few_transactions(storage_app, held_writer):
    """Submitted (journalled) writes do not wait, so a backlog can build up behind a slow batch;
    the writer must drain it in large batches, not 64 at a time, or it falls behind for good."""
    writer, transactions = held_writer.writer, held_writer.transactions
    gate, first_in_flight = held_writer.gate, held_writer.first_in_flight
    outcomes: list[BaseException | None] = []
    all_done = threading.Event()
    backlog = 300

    def on_done(error: BaseException | None) -> None:
        outcomes.append(error)
        if len(outcomes) == backlog + 1:
            all_done.set()

    writer.submit(partial(write_hook_call, row=_row("b0")), on_done=on_done)
    assert first_in_flight.wait(30)  # b0 alone is being written; the rest queue behind it
    for i in range(1, backlog + 1):
        writer.submit(partial(write_hook_call, row=_row(f"b{i}")), on_done=on_done)
    assert writer.pending() == backlog
    gate.set()
    assert all_done.wait(30)
    assert outcomes == [None] * (backlog + 1)
    assert len(transactions) == 2  # b0 alone, then the whole backlog in one transaction
    assert _count(storage_app) == backlog + 1


def test_a_row_the_database_refuses_fails_only_its_own_write(storage_app):
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    good = _Pending([partial(write_hook_call, row=_row("good-1"))], threading.Event())
    bad = _Pending([partial(write_hook_call, row=_row("bad-1", patient_id=None))], threading.Event())
    writer._write_batch([good, bad])  # one batch, as when both calls arrive together
    assert good.done.is_set() and bad.done.is_set()
    assert good.error is None
    assert isinstance(bad.error, Exception)
    assert _count(storage_app) == 1


def test_a_write_that_does_not_complete_in_time_raises(storage_app):
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    writer._write_batch = lambda batch: None  # never completes
    with pytest.raises(TimeoutError):
        writer.run(partial(write_hook_call, row=_row("slow-1")), timeout=0.05)


def test_a_write_still_queued_when_it_times_out_is_never_committed(storage_app):
    """After a TimeoutError the caller answers differently; its first write must not land later."""
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    gate, first_in_flight = threading.Event(), threading.Event()
    original_batch = writer._write_batch

    def held_batch(batch):
        first_in_flight.set()
        assert gate.wait(30)
        original_batch(batch)

    writer._write_batch = held_batch
    first = threading.Thread(target=writer.run, args=(partial(write_hook_call, row=_row("held-1")),))
    first.start()
    assert first_in_flight.wait(30)  # the first write is in flight, behind the gate
    with pytest.raises(TimeoutError):
        writer.run(partial(write_hook_call, row=_row("queued-1")), timeout=0.05)
    gate.set()
    first.join(30)
    threading.Event().wait(0.2)  # time for the writer to take anything still queued
    with storage_app.extensions["cds"].database.session() as session:
        keys = set(session.scalars(select(HookCallRecord.record_key)))
    assert "held-1" in keys and "queued-1" not in keys


def test_a_batch_whose_commit_fails_is_not_written_again(storage_app):
    """The COMMIT may have reached the database: running the writes again could store them twice."""
    from contextlib import contextmanager

    database = storage_app.extensions["cds"].database
    writer = GroupCommitWriter(database)
    runs: list[str] = []

    @contextmanager
    def commit_lost():
        with database.engine.connect() as connection:
            connection.begin()
            yield connection
            connection.rollback()
            raise RuntimeError("connection lost during COMMIT")

    database.transaction = commit_lost
    try:
        batch = [_Pending([lambda connection, key=key: runs.append(key)]) for key in ("a", "b")]
        writer._write_batch(batch)
    finally:
        del database.transaction  # the class's method again
    assert runs == ["a", "b"]  # each write ran once, in the one batch
    assert all(isinstance(item.error, RuntimeError) for item in batch)


def test_settle_waits_for_the_writes_submitted_before_it(storage_app):
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    outcomes: list[BaseException | None] = []
    gate = threading.Event()
    writer.submit(lambda connection: gate.wait(5), on_done=outcomes.append)
    writer.submit(partial(write_hook_call, row=_row("settled-1")), on_done=outcomes.append)
    assert not writer.settle(timeout=0.1)  # the first write is still in its transaction
    gate.set()
    assert writer.settle(timeout=5)
    assert outcomes == [None, None]
    assert _count(storage_app) == 1


def test_settle_with_nothing_queued_answers_at_once_without_a_transaction(storage_app):
    database = storage_app.extensions["cds"].database
    writer = GroupCommitWriter(database)
    writer.run(partial(write_hook_call, row=_row("before-1")))

    def no_transaction():
        raise AssertionError("settle opened a transaction with nothing to write")

    database.transaction = no_transaction
    try:
        assert writer.settle(timeout=1)
    finally:
        del database.transaction  # the class's method again


def test_a_failing_write_with_a_settle_behind_it_is_run_once(storage_app):
    database = storage_app.extensions["cds"].database
    writer = GroupCommitWriter(database)
    runs, outcomes, transactions = [], [], []
    gate, holding = threading.Event(), threading.Event()
    writer.submit(lambda connection: (holding.set(), gate.wait(5)), on_done=outcomes.append)
    assert holding.wait(5)  # the writer is in that write's transaction: what follows is a new batch

    def refused(connection):
        runs.append(1)
        raise RuntimeError("refused")

    writer.submit(refused, on_done=outcomes.append)
    settled = threading.Thread(target=lambda: outcomes.append(("settled", writer.settle(timeout=5))))
    settled.start()
    time.sleep(0.1)  # the marker is queued behind the refused write: one batch of the two
    opened = database.transaction
    database.transaction = lambda: (transactions.append(1), opened())[1]
    try:
        gate.set()
        settled.join(5)
    finally:
        del database.transaction  # the class's method again
    assert runs == [1]  # alone in its batch but for the marker: not run a second time
    assert transactions == [1]  # and the marker opened none of its own
    assert outcomes[0] is None and isinstance(outcomes[1], RuntimeError) and outcomes[2] == ("settled", True)


def test_a_submitted_write_of_nothing_is_still_reported_done(storage_app):
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    outcomes: list[BaseException | None] = []
    writer.submit(on_done=outcomes.append)
    assert writer.settle(timeout=5)
    assert outcomes == [None]


def test_pending_counts_writes_not_the_markers_of_settles_that_timed_out(storage_app):
    writer = GroupCommitWriter(storage_app.extensions["cds"].database)
    gate, holding = threading.Event(), threading.Event()
    writer.submit(lambda connection: (holding.set(), gate.wait(5)), on_done=lambda error: None)
    assert holding.wait(5)  # taken into a transaction: no longer pending
    writer.submit(partial(write_hook_call, row=_row("queued-1")), on_done=lambda error: None)
    assert not writer.settle(timeout=0.05) and not writer.settle(timeout=0.05)
    assert writer.pending() == 1
    gate.set()
    assert writer.settle(timeout=5)
    assert writer.pending() == 0


def test_an_alert_finds_its_call_when_the_record_key_had_to_be_made_storable(storage_app, monkeypatch):
    from cds_service import audit
    from cds_service.models import Alert

    rows = []
    build = audit.hook_call_row
    monkeypatch.setattr(audit, "hook_call_row", lambda *args: rows.append(build(*args)) or rows[-1])
    call(storage_app.test_client(), hook_request())
    database = storage_app.extensions["cds"].database
    assert database.writer.settle() and rows and rows[0]["alerts"]
    key = "k\x00" + "x" * 40  # a NUL, and longer than the column's 36 characters
    row = dict(rows[0], record_key=key, alerts=[dict(a, card_uuid=f"{a['card_uuid']}-2") for a in rows[0]["alerts"]])
    database.writer.run(partial(write_hook_call, row=row))
    with database.session() as session:
        stored = session.scalars(select(HookCallRecord).where(HookCallRecord.record_key.startswith("k"))).one()
        alerts = session.scalars(select(Alert).where(Alert.hook_call_id == stored.id)).all()
    assert len(alerts) == len(row["alerts"])
