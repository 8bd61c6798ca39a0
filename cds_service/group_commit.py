"""Group commit: the writes of concurrent hook calls share one transaction.

A request thread hands its write (a function of a SQLAlchemy Core connection) to the one writer thread
of its process and waits until the transaction holding it has committed (or failed), so a call
is answered only once what it wrote is in the database, exactly as with a transaction per call,
and nothing is lost when the process dies: a write whose call has not been answered may be
missing, an answered one never is. What changes is the cost: one transaction (one SQLite write
lock, one commit) for every write that arrived while the previous batch was being written,
instead of one per call, with the threads and processes no longer queueing on SQLite's lock
one by one. The audit trail (:mod:`.audit`) and the CRD coverage assertions (:mod:`.crd.store`)
both write through it.

A write is either a function of the connection or a :class:`.driver_insert.Statement` whose
parameters the caller's thread has already converted: the writer runs the statements of every
call in a batch as one ``executemany`` per distinct SQL, so the write lock is held for little
more than the database's own work.

When a write in a batch fails, the batch is rolled back and its writes are run again one per
transaction, so one write the database refuses fails only its own call (the audit then spools
its row; an assertion that cannot be kept is not given). When the COMMIT itself fails, nothing is
run again: it may have reached the database, and a write must never be stored twice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .driver_insert import Statement, execute_statements

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from .db import Database

log = logging.getLogger(__name__)

WRITE_WAIT_S = 40.0  # longer than SQLite's busy timeout and PostgreSQL's connect timeout

Work = Callable[["Connection"], Any] | Statement


def _apply(connection: Connection, works: list[Work]) -> None:
    """Run ``works`` on ``connection``: the functions in order, then every :class:`Statement`,
    one ``executemany`` per distinct SQL for the whole batch."""
    statements = []
    for work in works:
        if isinstance(work, Statement):
            statements.append(work)
        else:
            work(connection)
    if statements:
        execute_statements(connection, statements)


@dataclass
class _Pending:
    works: list[Work]
    # Set once the write committed or failed, for a caller that waits for it (run, settle); a
    # submitted write has none (an Event, with its Condition, was a tenth of recording a call).
    done: threading.Event | None = None
    error: BaseException | None = None
    # Called by the writer thread once the write committed (None) or failed (the error).
    on_done: Callable[[BaseException | None], None] | None = None
    marker: bool = False  # settle()'s: no write, only "every write before me is through"


class GroupCommitWriter:
    """One writer thread per process for one database; see the module docstring."""

    # Writes per transaction at most. Journalled calls do not wait for their commit, so under
    # sustained load the queue can grow faster than small batches drain it (64 fell behind until
    # calls had to wait: bench/README.md); the audit's max_pending, not this, bounds memory.
    MAX_BATCH = 512

    def __init__(self, database: Database) -> None:
        self.database = database
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._writing: _Pending | None = None  # the last item of the batch being written
        self._markers = 0  # settle() markers in the queue, which pending() does not count
        self._pid = os.getpid()

    def run(self, *works: Work, timeout: float = WRITE_WAIT_S) -> None:
        """Return once ``works`` are committed, all in one transaction; raise what the database
        raised, or TimeoutError.

        A write still queued after ``timeout`` is taken off the queue (it never happens); one
        already in a transaction is waited for up to ``timeout`` more (the database's own
        time-outs, 30 s for SQLite's lock and 5 s to connect to PostgreSQL, end it sooner), so a
        caller that answers differently after a TimeoutError does not have its first answer
        committed behind its back, unless a transaction hung past both waits.
        """
        done = threading.Event()
        item = self._enqueue(_Pending(list(works), done))
        if not done.wait(timeout):
            with self._cond:
                queued = item in self._queue
                if queued:
                    self._queue.remove(item)
                    done.set()  # withdrawn: nobody settles on it
            if queued or not done.wait(timeout):
                raise TimeoutError(f"the database write did not complete within {timeout:.0f} s")
        if item.error is not None:
            raise item.error

    def submit(self, *works: Work, on_done: Callable[[BaseException | None], None]) -> None:
        """Queue ``works`` without waiting: ``on_done`` is called from the writer thread with
        None once they have committed, or with the error (the audit journal's way in)."""
        self._enqueue(_Pending(list(works), on_done=on_done))

    def pending(self) -> int:
        """Writes queued and not yet taken into a transaction (by this process)."""
        return len(self._queue) - self._markers if self._pid == os.getpid() else 0

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until every write queued before this call has committed or failed (False if
        that took longer than ``timeout``): what this process answered is then readable."""
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's queue is not ours to wait for
                return True
            if not self._queue and self._writing is None:
                return True
            # A marker behind them: the writer takes the queue in order and sets a marker once
            # every write taken with it or before it is through.
            done = threading.Event()
            self._markers += 1
            self._enqueue(_Pending([], done, marker=True))
        return done.wait(timeout)

    def _enqueue(self, item: _Pending) -> _Pending:
        with self._cond:  # re-entrant: settle() holds it already
            self._ensure_thread()
            self._queue.append(item)
            self._cond.notify()
        return item

    def _ensure_thread(self) -> None:  # holds self._cond
        if self._pid != os.getpid():  # forked: the parent's thread and queue are not ours
            self._pid, self._thread, self._queue, self._writing = os.getpid(), None, [], None
            self._markers = 0
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="cds-group-commit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue[:self.MAX_BATCH], self._queue[self.MAX_BATCH:]
                markers = [item for item in batch if item.marker]
                self._markers -= len(markers)
                self._writing = batch[-1]
            writes = [item for item in batch if not item.marker]
            if writes:
                self._write_batch(writes)
            for marker in markers:  # after the writes: each is through, committed or failed
                if marker.done is not None:
                    marker.done.set()
            with self._cond:
                self._writing = None

    def _write_batch(self, batch: list[_Pending]) -> None:
        committing = False
        try:
            with self.database.write_lock(), self.database.transaction() as connection:
                _apply(connection, [work for item in batch for work in item.works])
                committing = True  # leaving the block commits
        except Exception as exc:
            if len(batch) == 1 or committing:
                # A failed COMMIT may still have reached the database (PostgreSQL, connection
                # lost): the writes are not run again, so nothing can be stored twice; each call
                # sees the error (its assertions are then not given, its audit row is spooled,
                # and a replayed row is idempotent by its record_key).
                for item in batch:
                    item.error = exc
            else:  # find the write(s) at fault: each alone in its own transaction
                for item in batch:
                    try:
                        with self.database.write_lock(), self.database.transaction() as connection:
                            _apply(connection, item.works)
                    except Exception as item_exc:
                        item.error = item_exc
        finally:
            for item in batch:
                if item.on_done is not None:
                    try:
                        item.on_done(item.error)
                    except Exception:  # the writer thread must go on
                        log.exception("a group-commit completion failed")
                if item.done is not None:
                    item.done.set()
