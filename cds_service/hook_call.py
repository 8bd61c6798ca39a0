"""One hook call from the raw body to the response body, outside any web framework.

Both ways in call :func:`answer_hook_call`: the Flask view (``routes.call_service``) and the
fast lane in front of Flask (:mod:`.fast_lane`). It parses and checks the envelope, evaluates
the orders (:func:`.pipeline.evaluate`), shapes the Da Vinci CRD answer, records the call (with
its coverage assertions, in one transaction), and counts and logs it: one request, one
direction. Bad input raises an :class:`.errors.ApiError`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from . import metrics
from .crd.respond import card_reserve
from .crd.respond import respond as crd_respond
from .crd.store import assertion_writer
from .hook_request import check_draft_order_count, parse_body, validate_envelope
from .pipeline import Evaluation, evaluate
from .recording import HookCall
from .services import ServiceDefinition

hook_log = logging.getLogger("cds_service.hooks")
_LOGGABLE_ID = re.compile(r"[A-Za-z0-9.:-]{1,64}")  # a UUID, or an id of that shape; never free text


def answer_hook_call(service: ServiceDefinition, body: bytes, state: Any, config: Mapping[str, Any],
                     client: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CDS Hooks response body for one call of ``service`` (``state`` is the app's
    ``ServiceState``, ``client`` the verified JWT's ``iss``/``tenant``/``jti`` when auth is on)."""
    started = time.perf_counter()
    data = parse_body(body)
    check_draft_order_count(data, int(config["MAX_DRAFT_ORDERS"]))
    hook_request = validate_envelope(data, expected_hook=service.hook)
    evaluation = evaluate(
        hook_request,
        body,
        state.knowledge,
        state.card_text,
        state.policy_settings,
        data_source_factory=state.data_source_factory,
        max_cards=int(config["MAX_CARDS"]),
        card_reserve=card_reserve(hook_request),  # each card rendered once, with room for the CRD lines
    )
    client_iss = (client or {}).get("iss")
    crd = crd_respond(hook_request, evaluation, client_iss=client_iss, config=config,
                      card_text=state.card_text)  # Da Vinci CRD
    elapsed_ms = (time.perf_counter() - started) * 1000
    call = HookCall(hook_request, service, crd.evaluation, elapsed_ms, client_iss)
    if not crd.assertions:
        state.recorder.record_hook_call(call)
    elif not state.recorder.record_hook_call(call, also=assertion_writer(
            crd.assertions, hook_instance=hook_request.hook_instance, service_id=service.id,
            client_iss=client_iss, patient_id=hook_request.patient_id, crd_version=crd.settings.version)):
        # An assertion that cannot be kept is not given (found-11): the answer without them.
        crd = crd_respond(hook_request, evaluation, client_iss=client_iss, config=config,
                          card_text=state.card_text, coverage_info=False)
        state.recorder.record_hook_call(replace(call, evaluation=crd.evaluation))
    evaluation = crd.evaluation
    total = time.perf_counter() - started  # what the EHR waits for, the audit write included
    metrics.observe_hook(service.id, evaluation.fast_path, total)
    for decision, _card in evaluation.carded_decisions():
        family = decision.family
        metrics.count_card(decision.policy_choice.policy.id, family.id if family else "none", decision.indicator)
    if hook_log.isEnabledFor(logging.INFO):
        _log_hook_call(hook_log_fields(hook_request.hook_instance, service.id, evaluation, total * 1000))
    return crd.body


def _log_hook_call(fields: dict[str, Any]) -> None:
    """``hook_log.info("hook call", extra={"fields": fields})``, without the caller lookup
    (a walk up the stack that was a third of the line's cost; the line says where it is from)."""
    hook_log.handle(hook_log.makeRecord(hook_log.name, logging.INFO, __file__, 0, "hook call", (), None,
                                        func="answer_hook_call", extra={"fields": fields}))


def hook_log_fields(hook_instance: str, service_id: str, evaluation: Evaluation, latency_ms: float) -> dict:
    """The structured fields of the one log line per hook call: no patient, user, token or free text."""
    policies = sorted({d.policy_choice.policy.id for d in evaluation.decisions})
    return {
        "hookInstance": hook_instance if _LOGGABLE_ID.fullmatch(hook_instance) else "(not an id)",
        "service": service_id,
        "path": "out_of_scope" if evaluation.fast_path else "in_scope",
        "latency_ms": round(latency_ms, 2),
        "cards": len(evaluation.cards),
        "decisions": [d.kind for d in evaluation.decisions],
        "policy": policies[0] if len(policies) == 1 else (policies or None),
    }
