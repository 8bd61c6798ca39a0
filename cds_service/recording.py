"""Where the HTTP layer hands finished hook calls for recording (audit trail).

The default recorder keeps nothing. A durable recorder is installed by the app factory when
storage is configured; it must never raise into the EHR's call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .hook_request import HookRequest
from .pipeline import Evaluation
from .services import ServiceDefinition
from .storage_safety import log_safe

if TYPE_CHECKING:
    from .driver_insert import Rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookCall:
    request: HookRequest
    service: ServiceDefinition
    evaluation: Evaluation
    latency_ms: float
    client_iss: str | None  # the verified JWT issuer, when authentication is on


class Recorder(Protocol):
    def record_hook_call(self, call: HookCall, also: Rows | None = None) -> bool:
        """Record ``call``; ``also`` (the call's coverage assertions) must be kept in the same
        transaction. True when ``also`` was committed; False when it was not (then nothing of
        this call was written: the caller gives the answer without what ``also`` keeps, and
        records that answer instead)."""
        ...


class NullRecorder:
    """No storage (``AUDIT_ENABLED=false``, ``cds-service evaluate``): nothing is kept."""

    def record_hook_call(self, call: HookCall, also: Rows | None = None) -> bool:
        if also is not None:  # by design, not a fault
            log.info("coverage information withheld: no database to keep coverage assertions in "
                     "(hookInstance=%s)", log_safe(call.request.hook_instance))
        return False
