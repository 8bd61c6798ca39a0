"""Log output of the ``cds_service`` loggers: level and format (json | text) from configuration.

One handler on the ``cds_service`` logger, writing to standard error (waitress and most
process managers collect it) by one writer thread per process (:class:`LineWriter`).

A record may carry structured fields in ``extra={"fields": {...}}``; the JSON format puts them at
the top level of the line, the text format appends them as ``key=value``. Records still
propagate, so an operator's own root handlers keep working.

A JSON formatter is a dozen lines over :mod:`json`; a dependency for it would be larger than it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from datetime import UTC, datetime
from typing import Any, ClassVar

from .background import BatchWorker
from .json_text import ascii_json

LOG_FORMATS = ("json", "text")
_HANDLER_NAME = "cds_service"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return ascii_json(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None) or {}
        return text + "".join(f" {key}={value}" for key, value in fields.items())


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: object, log_format: object) -> None:
    """Install (or replace) the service's handler; a bad setting is an error at start-up."""
    fmt = str(log_format).strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {log_format!r}")
    name = str(level).strip().upper()
    if not isinstance(logging.getLevelNamesMapping().get(name), int):
        raise ValueError(f"LOG_LEVEL must be a logging level name (DEBUG, INFO, WARNING, ERROR), not {level!r}")
    logger = logging.getLogger("cds_service")
    logger.setLevel(name)
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()  # its writer thread writes what is queued and stops
    handler = LineWriter(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter(fmt))
    logger.addHandler(handler)


class LineWriter(logging.Handler):
    """Formats each line in the thread that logs; one writer thread per process writes them.

    ``logging.StreamHandler`` holds its lock around ``write()`` and ``flush()``; with several
    request threads logging at once they queue on that lock, a context switch each, which cost
    more than the rest of an out-of-scope hook call (bench/README.md). Here a request thread only
    formats its line and puts it on a queue; the writer thread (:class:`.background.BatchWorker`)
    writes every line waiting, in one ``write()``, as soon as it runs. At exit
    (``logging.shutdown``) the queue is written out; lines queued when a process is killed
    outright are lost (the audit trail, not the log, is the durable record). A fork waits until no
    writer is in the middle of a write, so the child never inherits a stream locked by a thread it
    does not have.
    """

    _instances: ClassVar[weakref.WeakSet[LineWriter]] = weakref.WeakSet()

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream
        self._writing = threading.Lock()  # held around each write; taken by a fork (see below)
        self._lines = BatchWorker("cds-log-writer", self._write)
        LineWriter._instances.add(self)

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        rv = self.filter(record)  # no handler lock: formatting is per record, the queue is thread-safe
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._lines.put(line)

    def _write(self, lines: list[str]) -> None:
        with self._writing:
            self.stream.write("".join(lines))
            self.stream.flush()

    def close(self) -> None:
        """Write out what is queued and stop the writer (``logging.shutdown`` calls this at exit)."""
        self._lines.stop(timeout=5)
        super().close()


def _before_fork() -> None:
    for writer in list(LineWriter._instances):
        writer._writing.acquire()


def _after_fork_in_parent() -> None:
    for writer in list(LineWriter._instances):
        writer._writing.release()


def _after_fork_in_child() -> None:
    for writer in list(LineWriter._instances):
        writer._writing = threading.Lock()  # held by the parent's fork; this child has no writer yet


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
