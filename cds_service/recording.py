"""Where the HTTP layer hands finished hook calls for recording (audit trail).

The default recorder keeps nothing. A durable recorder is installed by the app factory when
storage is configured; it must never raise into the EHR's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .hook_request import HookRequest
from .pipeline import Evaluation
from .services import ServiceDefinition


@dataclass(frozen=True)
class HookCall:
    request: HookRequest
    service: ServiceDefinition
    evaluation: Evaluation
    latency_ms: float
    client_iss: str | None  # the verified JWT issuer, when authentication is on


class Recorder(Protocol):
    def record_hook_call(self, call: HookCall) -> None: ...


class NullRecorder:
    def record_hook_call(self, call: HookCall) -> None:
        return None
