"""HTTP endpoints: discovery and the hook services."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from .errors import ApiError
from .fast_lane import FAST_LANE_FAILURE
from .hook_call import answer_hook_call
from .http_policy import require_identity_encoding
from .services import SERVICES

bp = Blueprint("cds", __name__)


@bp.get("/cds-services", strict_slashes=False)  # "/cds-services/" too
def discovery():
    return jsonify({"services": [s.discovery() for s in SERVICES.values()]})


@bp.post("/cds-services/<service_id>", strict_slashes=False)
def call_service(service_id: str):
    failure = request.environ.get(FAST_LANE_FAILURE)
    if failure is not None:  # the fast lane already ran this call: answer with how it failed
        raise failure
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError.single(404, f"Unknown CDS service '{service_id}'. "
                                   "GET /cds-services lists the services offered.")
    require_identity_encoding(request.headers.get("Content-Encoding"))
    body = request.get_data(cache=False)
    return jsonify(answer_hook_call(service, body, current_app.extensions["cds"], current_app.config,
                                    g.get("cds_client")))
