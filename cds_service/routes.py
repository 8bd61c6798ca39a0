"""HTTP endpoints: discovery and the hook services."""

from __future__ import annotations

import logging
import re
import time

from flask import Blueprint, current_app, g, jsonify, request

from . import metrics
from .crd.respond import respond as crd_respond
from .errors import ApiError
from .hook_request import check_draft_order_count, parse_body, validate_envelope
from .pipeline import Evaluation, evaluate
from .recording import HookCall
from .services import SERVICES

hook_log = logging.getLogger("cds_service.hooks")
_LOGGABLE_ID = re.compile(r"[A-Za-z0-9.:-]{1,64}")  # a UUID, or an id of that shape; never free text
bp = Blueprint("cds", __name__)


@bp.get("/cds-services")
def discovery():
    return jsonify({"services": [s.discovery() for s in SERVICES.values()]})


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    started = time.perf_counter()
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError.single(404, f"Unknown CDS service '{service_id}'. "
                                   "GET /cds-services lists the services offered.")
    body = request.get_data(cache=False)
    data = parse_body(body)
    check_draft_order_count(data, int(current_app.config["MAX_DRAFT_ORDERS"]))
    hook_request = validate_envelope(data, expected_hook=service.hook)
    state = current_app.extensions["cds"]
    evaluation = evaluate(
        hook_request,
        body,
        state.knowledge,
        state.card_text,
        state.policy_settings,
        data_source_factory=state.data_source_factory,
        max_cards=int(current_app.config["MAX_CARDS"]),
    )
    client = g.get("cds_client") or {}
    crd = crd_respond(hook_request, evaluation, service_id=service.id, client_iss=client.get("iss"),
                      config=current_app.config, database=state.database,
                      card_text=state.card_text)  # Da Vinci CRD
    evaluation = crd.evaluation
    elapsed_ms = (time.perf_counter() - started) * 1000
    state.recorder.record_hook_call(
        HookCall(hook_request, service, evaluation, elapsed_ms, client.get("iss"))
    )
    total = time.perf_counter() - started  # what the EHR waits for, the audit write included
    metrics.observe_hook(service.id, evaluation.fast_path, total)
    for decision, _card in evaluation.carded_decisions():
        family = decision.family
        metrics.count_card(decision.policy_choice.policy.id, family.id if family else "none", decision.indicator)
    if hook_log.isEnabledFor(logging.INFO):
        hook_log.info("hook call", extra={"fields": hook_log_fields(
            hook_request.hook_instance, service.id, evaluation, total * 1000)})
    return jsonify(crd.body)


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
