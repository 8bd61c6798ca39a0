"""HTTP endpoints: discovery and the hook services."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, g, jsonify, request

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
        state.policy_settings,
        data_source_factory=state.data_source_factory,
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("hook=%s service=%s hookInstance=%s cards=%d fast_path=%s ms=%.1f",
             hook_request.hook, service.id, hook_request.hook_instance, len(evaluation.cards),
             evaluation.fast_path, elapsed_ms)
    client = g.get("cds_client") or {}
    state.recorder.record_hook_call(
        HookCall(hook_request, service, evaluation, elapsed_ms, client.get("iss"))
    )
    return jsonify({"cards": evaluation.cards})
