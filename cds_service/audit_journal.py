"""The audit journal: a hook call is answered once its records are in a local file, not the database.

Why: with a transaction per answer (even group-committed), every in-scope call waited for the
writer thread and for SQLite's one write lock, which the worker processes take in turn; served,
that wait halved the in-scope throughput (bench/README.md). With the journal, the request thread
appends the call's records (its audit row, its alerts, its coverage assertions) as one JSON line
to a file of its own process and answers; the group-commit writer puts them in the database a
moment later, in batches, and the line is forgotten once its transaction has committed.

Durability: a line is written with one ``write(2)`` on a file opened ``O_APPEND`` before the call
is answered, so a process that dies (SIGKILL, a crash, the OOM killer) leaves it in the file: the
next process to start on the same folder and database replays every journal file whose owner has
died (it holds no ``flock`` any more) and deletes it. Replaying is idempotent (an audit row by its
``record_key``, an alert by its card's uuid, coverage assertions by their id), so a line whose
transaction committed just before the crash is stored once. Like SQLite's own ``synchronous=NORMAL``
used for the audit database, a power loss can lose the last lines the kernel had not yet written.

Files: ``cds-journal-<hash of DATABASE_URL>-<pid>-<n>.jsonl`` (mode 0600: they hold what the
audit database holds) in the spool folder. A process writes to one file at a time and starts a
new one when the old one is large or a few seconds old and every line in it has committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

SEGMENT_MAX_BYTES = 4 * 1024 * 1024
SEGMENT_MAX_AGE_S = 5.0


def journal_wanted(setting: object, dialect: str) -> bool:
    """``AUDIT_JOURNAL``: true, false, or auto (the default): on for SQLite, whose commits the
    service makes with ``synchronous=NORMAL`` (a power loss can lose the last ones, as it can the
    journal's last lines), off for PostgreSQL, whose commit is durable on the database server:
    an answered call, and a coverage assertion given with it, must not be less durable than the
    database would have kept it."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        return dialect == "sqlite"
    from .config import as_bool

    return as_bool(setting, "AUDIT_JOURNAL")


def journal_prefix(database_url: str) -> str:
    """The files of one database: lines never go to a database they were not meant for."""
    from sqlalchemy.engine import make_url

    rendered = make_url(database_url).render_as_string(hide_password=True)
    return f"cds-journal-{hashlib.sha256(rendered.encode()).hexdigest()[:16]}-"


# Every line is ``{"journal":1,"record":<the record>}``: a line cut short, with whole lines of
# other threads glued to it, is split again where this marker starts (it cannot occur inside a
# record: object keys are the service's own, and a quote inside a string is escaped).
LINE_START = b'{"journal":1,"record":'


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        text = orjson.dumps(record)
    except TypeError:  # what orjson refuses (integers beyond 64 bits): the standard library
        text = json.dumps(record, separators=(",", ":"), default=str).encode()
    return LINE_START + text + b"}"


@dataclass
class Segment:
    path: Path
    fd: int  # open for appending, with an exclusive flock for as long as the file exists
    opened: float
    size: int = 0
    appended: int = 0
    committed: int = 0
    closed: bool = False  # no more appends: deleted when every line has committed


class Journal:
    """One process's journal files in ``folder`` for one database (see the module docstring)."""

    def __init__(self, folder: str | Path, database_url: str) -> None:
        self.folder = Path(folder)
        self.prefix = journal_prefix(database_url)
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        self._pid = os.getpid()
        self._sequence = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> Segment:
        """Write ``record`` as one line; return the segment to pass to :meth:`committed`.
        Raises OSError when the line could not be written (then nothing is owed)."""
        line = _dumps(record) + b"\n"
        with self._lock:  # the file is chosen, and the line counted, before it is written, so
            segment = self._current()  # the file cannot be deleted under the write
            segment.appended += 1
            segment.size += len(line)
        try:
            # Outside the lock: O_APPEND writes of whole lines do not interleave, and a thread
            # waiting here for the GIL after its write() no longer holds up the others.
            written = os.write(segment.fd, line)
            if written != len(line):  # a full disk mid-line: the line is unusable
                raise OSError(f"short write to the audit journal ({written} of {len(line)} bytes)")
        except BaseException:
            with self._lock:  # a part-written line ends the file: later lines go to a new one
                if self._segment is segment:
                    segment.closed, self._segment = True, None
            with contextlib.suppress(OSError):  # end the cut line, so a line another thread
                os.write(segment.fd, b"\n")  # writes after it is not glued to it
            self.committed(segment)  # nothing is owed for this line
            raise
        return segment

    def committed(self, segment: Segment) -> None:
        """One line of ``segment`` is in the database."""
        with self._lock:
            segment.committed += 1
            if segment.closed:
                self._delete_if_done(segment)

    def close(self) -> None:
        """Stop appending. A file with lines not yet committed stays for the next start (its
        lock goes when this process ends)."""
        with self._lock:
            if self._segment is not None and self._pid == os.getpid():
                self._segment.closed = True
                self._delete_if_done(self._segment)
            self._segment = None

    def __del__(self) -> None:  # an app dropped without close() (tests build many)
        with contextlib.suppress(Exception):
            self.close()

    def _current(self) -> Segment:  # holds self._lock
        segment = self._segment
        if self._pid != os.getpid():  # forked: the parent's file and lock are not ours
            self._pid, segment, self._segment = os.getpid(), None, None
        if segment is not None and (segment.size >= SEGMENT_MAX_BYTES
                                    or time.monotonic() - segment.opened >= SEGMENT_MAX_AGE_S):
            # A new file; the old one goes once its last line has committed (under steady load
            # some line is always still waiting, so waiting for none would never rotate).
            segment.closed = True
            self._delete_if_done(segment)
            segment = None
        if segment is None:
            segment = self._segment = self._open_segment()
        return segment

    def _open_segment(self) -> Segment:
        self._sequence += 1
        path = self.folder / f"{self.prefix}{os.getpid()}-{self._sequence}-{time.time_ns()}.jsonl"
        # Created and locked under a name recovery does not look at, then renamed: a process
        # starting up can never find the file unlocked, take it for a dead process's and delete it.
        creating = path.with_suffix(".creating")
        fd = os.open(creating, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            os.rename(creating, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                creating.unlink()
            raise
        return Segment(path, fd, time.monotonic())

    @staticmethod
    def _delete_if_done(segment: Segment) -> None:  # holds self._lock
        if segment.committed < segment.appended or segment.fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)  # releases the flock
        segment.fd = -1

    def recover(self, replay: Callable[[list[dict[str, Any]]], None]) -> int:
        """Replay the files of processes that died, oldest first; return the lines replayed.

        ``replay`` gets every line of one file and must store them idempotently; when it raises
        (the database is down, say), the file is kept for the next start, logged, and start-up
        goes on: the service answers, and its own calls go to a journal of their own. A line cut
        short (a power loss, a full disk) was never answered and is skipped, with a warning."""
        replayed = 0
        for path in sorted(self.folder.glob(f"{self.prefix}*.jsonl"), key=_age):
            try:
                replayed += self._recover_file(path, replay)
            except Exception as exc:
                log.error("audit journal %s not stored (%s); kept for the next start", path.name,
                          type(exc).__name__)
        if replayed:
            log.warning("audit journal: %d record(s) left by a process that stopped were stored", replayed)
        return replayed

    @staticmethod
    def _recover_file(path: Path, replay: Callable[[list[dict[str, Any]]], None]) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0  # another process recovered it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its process is alive
            if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
                return 0  # recovered and deleted by another process just before our lock
            records = _read_records(fd, path)
            if records:
                replay(records)
            path.unlink()
            return len(records)
        finally:
            os.close(fd)


def _age(path: Path) -> tuple[int, str]:
    try:
        return int(path.stem.rsplit("-", 1)[1]), path.name
    except (IndexError, ValueError):
        return 0, path.name


def _read_records(fd: int, path: Path) -> list[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "rb") as file:
        lines = file.read().split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            records.append(json.loads(line)["record"])
        except (ValueError, KeyError, TypeError):
            records.extend(_whole_records(line, path, number))
    return records


def _whole_records(line: bytes, path: Path, number: int) -> list[dict[str, Any]]:
    """The whole records in a line that does not parse: a cut line (a power loss, a full disk)
    with, perhaps, the lines of other threads written right after it, before its newline."""
    decoder, text, found = json.JSONDecoder(), line.decode("utf-8", "replace"), []
    marker, start = LINE_START.decode(), 0
    while (start := text.find(marker, start)) >= 0:
        try:
            wrapped, end = decoder.raw_decode(text, start)
        except ValueError:  # the cut one
            start += len(marker)
            continue
        found.append(wrapped["record"])
        start = end
    log.warning("audit journal %s: line %d is incomplete; %d whole record(s) in it kept",
                path.name, number, len(found))
    return found
