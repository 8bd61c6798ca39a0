"""Log output of the ``cds_service`` loggers: level and format (json | text) from configuration.

One handler on the ``cds_service`` logger, writing to standard error (waitress and most
process managers collect it). A record may carry structured fields in ``extra={"fields": {...}}``;
the JSON format puts them at the top level of the line, the text format appends them as
``key=value``. Records still propagate, so an operator's own root handlers keep working.

A JSON formatter is a dozen lines over :mod:`json`; a dependency for it would be larger than it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

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
        return json.dumps(line, separators=(",", ":"), default=str)


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
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter(fmt))
    logger.addHandler(handler)
