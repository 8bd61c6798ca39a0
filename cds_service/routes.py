"""HTTP endpoints: discovery and the hook services."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, g, jsonify, request

from .crd.respond import respond as crd_respond
from .errors import ApiError
from .hook_request import parse_body, validate_envelope
from .pipeline import evaluate
from .recording import HookCall
from .services import SERVICES

log = logging.getLogger(__name__)
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
    hook_request = validate_envelope(parse_body(body), expected_hook=service.hook)
    state = current_app.extensions["cds"]
    evaluation = evaluate(
        hook_request,
        body,
        state.knowledge,
        state.card_text,
        current_app.config["DEFAULT_POLICY_ID"],
        data_source_factory=state.data_source_factory,
    )
    client = g.get("cds_client") or {}
    crd = crd_respond(hook_request, evaluation, service_id=service.id, client_iss=client.get("iss"),
                      config=current_app.config, database=state.database)  # Da Vinci CRD
    evaluation = crd.evaluation
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("hook=%s service=%s hookInstance=%s cards=%d fast_path=%s ms=%.1f",
             hook_request.hook, service.id, hook_request.hook_instance, len(evaluation.cards),
             evaluation.fast_path, elapsed_ms)
    state.recorder.record_hook_call(
        HookCall(hook_request, service, evaluation, elapsed_ms, client.get("iss"))
    )
    return jsonify(crd.body)
