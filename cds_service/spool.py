"""A durable local spool for audit and feedback records the database could not take.

When a write to the database fails (PostgreSQL down, a network fault, a full disk on the server),
the record goes into a small SQLite file in the instance folder (mode 0600; WAL with
``synchronous=FULL``, so a committed record is on disk) and is written to the database later:
by a background thread of the process that spooled it, retrying every ``SPOOL_RETRY_SECONDS``,
and after any successful write of any process. Records are replayed in the order they were
spooled and deleted only after the database has committed them; each carries an idempotency
key (``hook_call.record_key``, ``feedback.idempotency_key``), so a record replayed twice, by two
processes, or after a crash between commit and delete, is stored once.

The spool is shared by all worker processes on a host (SQLite locking); it is not shared across
hosts, so each host replays its own records.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

# Set at interpreter exit: background replays stop instead of logging to streams already closed.
_EXITING = threading.Event()
atexit.register(_EXITING.set)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # a record the database refuses this often for its content is left for an operator
BUSY_TIMEOUT_S = 30

Handler = Callable[[dict[str, Any]], None]


class SpoolFull(Exception):
    pass


def spool_path(folder: str | Path, database_url: str) -> Path:
    """The spool of one database: records never go to a database they were not meant for."""
    from sqlalchemy.engine import make_url

    rendered = make_url(database_url).render_as_string(hide_password=True)
    return Path(folder) / f"cds-spool-{hashlib.sha256(rendered.encode()).hexdigest()[:16]}.sqlite3"


def create_private_file(path: Path) -> None:
    """Create ``path`` mode 0600 if it is missing; tighten it to 0600 if others can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


class Spool:
    """Records in a local SQLite file, oldest first."""

    def __init__(self, path: Path, max_records: int) -> None:
        self.path = path
        self.max_records = max_records
        create_private_file(path)  # SQLite gives -wal and -shm the database file's mode
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "kind TEXT NOT NULL, payload TEXT NOT NULL, spooled_at TEXT NOT NULL, "
                         "attempts INTEGER NOT NULL DEFAULT 0)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    def put(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Keep one record durably; raises SpoolFull or an OS/SQLite error when it cannot."""
        text = json.dumps(payload, separators=(",", ":"), default=_json_default)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (count,) = conn.execute("SELECT count(*) FROM spool").fetchone()
                if count >= self.max_records:
                    raise SpoolFull(f"the spool holds {count} records (SPOOL_MAX_RECORDS)")
                conn.execute("INSERT INTO spool (kind, payload, spooled_at) VALUES (?, ?, ?)",
                             (kind, text, datetime.now(UTC).isoformat()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def pending(self) -> int:
        """Records waiting to be written (including any left for an operator)."""
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM spool").fetchone()[0]

    def stuck(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM spool WHERE attempts >= ?", (MAX_ATTEMPTS,)).fetchone()[0]

    def replay(self, handlers: Mapping[str, Handler], limit: int = 1000) -> int:
        """Write up to ``limit`` records through ``handlers``; stop at the first database outage.

        Returns how many records were written (and removed from the spool).
        """
        with self._connect() as conn:
            rows = conn.execute("SELECT id, kind, payload FROM spool WHERE attempts < ? ORDER BY id "
                                "LIMIT ?", (MAX_ATTEMPTS, limit)).fetchall()
            written = 0
            for row_id, kind, payload in rows:
                try:
                    handlers[kind](json.loads(payload))
                except (OperationalError, DBAPIError) as exc:
                    if is_outage(exc):
                        if not _EXITING.is_set():
                            log.warning("spool replay paused: %s", type(exc).__name__)
                        break
                    self._count_attempt(conn, row_id, exc)
                    continue
                except Exception as exc:  # a record this code cannot write: do not block the rest
                    self._count_attempt(conn, row_id, exc)
                    continue
                conn.execute("DELETE FROM spool WHERE id = ?", (row_id,))
                written += 1
        return written

    @staticmethod
    def _count_attempt(conn: sqlite3.Connection, row_id: int, exc: Exception) -> None:
        conn.execute("UPDATE spool SET attempts = attempts + 1 WHERE id = ?", (row_id,))
        log.error("spooled record %d could not be written: %s", row_id, type(exc).__name__)


def is_outage(exc: Exception) -> bool:
    """A lost or refused connection, not a problem with the record itself."""
    return isinstance(exc, OperationalError) or bool(getattr(exc, "connection_invalidated", False))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class SpoolReplayer:
    """Spools failed writes and replays them in a background thread of this process."""

    def __init__(self, spool: Spool, handlers: Mapping[str, Handler], retry_seconds: float) -> None:
        self.spool = spool
        self.handlers = dict(handlers)
        self.retry_seconds = retry_seconds
        self.maybe_pending = True  # records may be left from an earlier run or another process
        self._lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._wake = threading.Event()

    def keep(self, kind: str, payload: Mapping[str, Any]) -> bool:
        """Spool one record; False (logged) when even the spool cannot take it."""
        try:
            self.spool.put(kind, payload)
        except (SpoolFull, OSError, sqlite3.Error) as exc:
            log.error("spool write failed: %s; the %s record is lost", type(exc).__name__, kind)
            return False
        with self._lock:
            self.maybe_pending = True
            self._ensure_thread()
        return True

    def after_success(self) -> None:
        """The database took a write: replay what is waiting, in the background."""
        if self.maybe_pending:
            with self._lock:
                self._ensure_thread()
                self._wake.set()

    def replay_now(self, limit: int = 1000) -> int:
        """Replay synchronously (e.g. before feedback, so its card is known); 0 if another thread is at it."""
        if not self._replay_lock.acquire(timeout=self.retry_seconds):
            return 0
        try:
            return self.spool.replay(self.handlers, limit)
        finally:
            self._replay_lock.release()

    def _ensure_thread(self) -> None:  # holds self._lock
        if self._pid != os.getpid():  # forked: threads do not survive fork
            self._pid, self._thread = os.getpid(), None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="cds-spool-replay", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not _EXITING.is_set():
            try:
                self.replay_now()
                with self._lock:
                    if self.spool.pending() - self.spool.stuck() <= 0:
                        self.maybe_pending = False
                        self._thread = None
                        return
            except Exception as exc:  # keep retrying; never die silently with records waiting
                if _EXITING.is_set():
                    return
                log.error("spool replay failed: %s", type(exc).__name__)
            self._wake.wait(self.retry_seconds)
            self._wake.clear()
