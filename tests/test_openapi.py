"""The OpenAPI 3.1 description: valid, served, true to the app (schemathesis, bounded)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis.generation.modes import GenerationMode

from cds_service import create_app
from cds_service.gather import DataSource
from cds_service.http_policy import openapi_spec
from cds_service.knowledge import SCHEMA_DIR
from cds_service.services import SERVICES

from .conftest import FIXTURES, load_json

SPEC = openapi_spec()
# Fixtures whose point is their bytes (encoding, byte order mark, an unreadable number) cannot be
# re-sent as parsed JSON; tests/test_fixtures.py posts them byte for byte.
BYTE_LEVEL = {"51-utf16-body-refused.json", "52-utf8-bom-ketamine.json", "53-bad-5000-digit-integer.json"}
REQUESTS = sorted(p for p in (FIXTURES / "hook-requests").glob("*.json") if p.name not in BYTE_LEVEL)


def validator_for(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


def test_spec_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_spec_is_served(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == SPEC


def test_hook_request_schema_is_the_one_the_app_validates_with():
    own = json.loads((SCHEMA_DIR / "hook-request.schema.json").read_text(encoding="utf-8"))
    own = {k: v for k, v in own.items() if k not in ("$schema", "$id")}
    assert SPEC["components"]["schemas"]["HookRequest"] == own


def test_spec_describes_discovery_service_and_feedback():
    assert set(SPEC["paths"]) == {
        "/cds-services", "/cds-services/{service_id}/feedback", *(f"/cds-services/{s}" for s in SERVICES)
    }


def test_service_ids_match_discovery():
    assert set(SPEC["components"]["parameters"]["ServiceId"]["schema"]["enum"]) == set(SERVICES)


def test_discovery_response_matches(client):
    validator_for("Discovery").validate(client.get("/cds-services").get_json())


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_fixture_requests_and_responses_match(client, path: Path):
    body = load_json(path)
    hook = body.get("hook") if isinstance(body, dict) else None
    service = "iv-anesthetics-order-select" if hook == "order-select" else "iv-anesthetics-order-sign"
    response = client.post(f"/cds-services/{service}", json=body)
    if not validator_for("HookRequest").is_valid(body):
        assert response.status_code == 400
    if response.status_code == 200:
        validator_for("CardsResponse").validate(response.get_json())
    else:
        assert str(response.status_code) in SPEC["paths"][f"/cds-services/{service}"]["post"]["responses"]
        validator_for("OperationOutcome").validate(response.get_json())


FEEDBACK_OK = [
    {"feedback": [{"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "accepted",
                   "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                   "outcomeTimestamp": "2026-11-21T19:38:07Z"}]},
    # The sandbox's dismiss: a reason Coding without display, no userComment.
    {"feedback": [{"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
                   "overrideReason": {"reason": {"code": "clinical-trial", "system": "urn:x"}},
                   "outcomeTimestamp": "2026-11-21T19:38:07.123+00:00"}]},
    {"feedback": [{"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
                   "overrideReason": {"userComment": "patient declined"},
                   "outcomeTimestamp": "2026-11-21T19:38:07Z"}]},
]
FEEDBACK_BAD = [
    {},
    {"feedback": []},
    {"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "2026-11-21T19:38:07Z"}]},
    {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2026-11-21T19:38:07Z"}]},
    {"feedback": [{"card": "x", "outcome": "overridden", "overrideReason": {},
                   "outcomeTimestamp": "2026-11-21T19:38:07Z"}]},
]


@pytest.mark.parametrize("body", FEEDBACK_OK)
def test_feedback_schema_accepts_spec_and_sandbox_shapes(body):
    validator_for("FeedbackRequest").validate(body)


@pytest.mark.parametrize("body", FEEDBACK_BAD)
def test_feedback_schema_rejects_invalid_feedback(body):
    assert not validator_for("FeedbackRequest").is_valid(body)


# --- schemathesis against the WSGI app ------------------------------------------------------
# Authentication is off here and covered by test_auth.py, so the description is loaded without
# its security requirement (otherwise every request "without Authorization" would be expected
# to get 401). Feedback is stored in a throwaway SQLite database.

def _api() -> schemathesis.BaseSchema:
    spec = {k: v for k, v in SPEC.items() if k != "security"}
    api = schemathesis.openapi.from_dict(spec)
    storage = f"sqlite:///{tempfile.mkdtemp(prefix='cds-openapi-')}/audit.sqlite3"
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": storage,
                      "SECRET_KEY": "openapi-test"})
    app.extensions["cds"].data_source_factory = DataSource  # prefetch only: never any network
    api.app = app
    api.config.generation.update(modes=list(GenerationMode))  # schema-valid and schema-violating
    return api


API = _api()


@API.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_description(case):
    case.call_and_validate()
