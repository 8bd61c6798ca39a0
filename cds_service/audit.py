"""The durable audit trail: a Recorder that writes hook calls and their cards to the database.

Recording is best effort by design: the EHR's call has already been answered in substance when
the recorder runs, so a database error is logged (type only, no PHI), counted, and swallowed.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from .db import Database
from .decision import Decision
from .models import Alert, HookCallRecord
from .recording import HookCall
from .resource_index import draft_order_entries

log = logging.getLogger(__name__)


def _order_ids(call: HookCall) -> list[str]:
    ids = []
    for full_url, resource in draft_order_entries(call.request.draft_orders):
        rid = resource.get("id")
        ref = f"{resource.get('resourceType', '?')}/{rid}" if isinstance(rid, str) else full_url
        if ref:
            ids.append(ref)
    return ids


def alert_from(decision: Decision, card: dict, when: datetime) -> Alert:
    order = decision.order
    drug = order.medication.drug
    family = decision.family
    codes = [
        {"system": m.indication.code.system, "code": m.indication.code.code,
         "display": m.indication.code.display, "source": m.indication.source, "family": m.family.id}
        for m in decision.matches
    ]
    return Alert(
        created_at=when,
        card_uuid=str(card.get("uuid")),
        order_id=order.order_ref,
        drug=drug.id if drug else None,
        drug_label=drug.label if drug else None,
        route=order.route.explanation,
        indication_codes=codes,
        indication_family=family.id if family else None,
        indication_family_label=family.label if family else None,
        policy_id=decision.policy_choice.policy.id,
        policy_section=decision.section_id,
        decision_kind=decision.kind,
        summary=str(card.get("summary", ""))[:300],
        indicator=str(card.get("indicator", "")),
        card=card,
    )


class DatabaseRecorder:
    """Writes a hook call and one Alert per card in a single transaction."""

    def __init__(self, database: Database, *, all_calls: bool = False) -> None:
        self.database = database
        self.all_calls = all_calls
        self.failures = 0  # per process; see docs/review.md
        self._lock = threading.Lock()

    def record_hook_call(self, call: HookCall) -> None:
        evaluation = call.evaluation
        if not evaluation.cards and not self.all_calls:
            return
        try:
            now = datetime.now(UTC)
            record = HookCallRecord(
                recorded_at=now,
                hook_instance=call.request.hook_instance,
                service_id=call.service.id,
                hook=call.request.hook,
                client_iss=call.client_iss,
                patient_id=call.request.patient_id,
                order_ids=_order_ids(call),
                card_count=len(evaluation.cards),
                latency_ms=round(call.latency_ms, 2),
            )
            record.alerts = [alert_from(d, card, now) for d, card in evaluation.carded_decisions()]
            with self.database.session() as session:
                session.add(record)
        except Exception as exc:  # never fail the EHR's call
            from .metrics import count_audit_write_failure  # not at import time: see cds_service.metrics
            count_audit_write_failure()
            with self._lock:
                self.failures += 1
            log.error("audit record failed: %s (hookInstance=%s, failures=%d)",
                      type(exc).__name__, call.request.hook_instance, self.failures)
