"""A misbehaving FHIR server never makes the hook fail or blow its deadline; tokens stay secret."""

from __future__ import annotations

import logging
import time

import pytest

from cds_service import create_app
from cds_service.fhir_client import query_permission

from .factories import condition, icd, searchset
from .local_fhir import Reply, body_with_server, closed_port_url, fake_fhir, json_reply, ketamine_order

REQUEST_TIMEOUT = 0.3
DEADLINE = 0.6
MARGIN = 0.5  # generous bound for the service's own work and a loaded CI machine
SERVICE = "/cds-services/iv-anesthetics-order-sign"
TOKEN = "secret-token-8c1f2a"
EXT = "iv-anesthetics-cds"


@pytest.fixture(scope="module")
def fault_app():
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "FHIR_REQUEST_TIMEOUT": REQUEST_TIMEOUT,
                       "FHIR_TOTAL_DEADLINE": DEADLINE})


def healthy(path: str) -> Reply:
    if path.startswith("/fhir/Condition/c-crps"):
        cond = condition(icd("G90.511", "Complex regional pain syndrome I of right upper limb"), id="c-crps")
        return json_reply(cond)
    if path.startswith(("/fhir/Coverage?", "/fhir/Condition?")):
        return json_reply(searchset())
    return json_reply({"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                       "code": "not-found"}]}, 404)


def post_timed(app, body: dict):
    started = time.monotonic()
    response = app.test_client().post(SERVICE, json=body)
    return response, time.monotonic() - started


FAULTS = {
    "http-500": (Reply(500, b'{"resourceType":"OperationOutcome"}'), "HTTP 500"),
    "http-401": (Reply(401, b""), "HTTP 401"),
    "http-404": (Reply(404, b'{"resourceType":"OperationOutcome","issue":[]}'), "HTTP 404"),
    "invalid-json": (Reply(200, b'{"resourceType": "Condition", "id": '), "not valid JSON"),
    "not-fhir": (Reply(200, b'["a", "list"]'), "not a FHIR resource"),
    "slow": (Reply(200, b"{}", delay=2.0), "timed out"),
    # Each byte well within the per-read timeout, the whole body far beyond the deadline.
    "trickle": (Reply(200, b'{"resourceType": "Condition", "id": "c-crps"}' + b" " * 200, trickle=0.05),
                "timed out"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_failing_fhir_server_gives_an_unavailable_indication_card_within_the_deadline(fault_app, fault, caplog):
    caplog.set_level(logging.INFO)
    reply, words = FAULTS[fault]
    with fake_fhir(lambda _path: reply) as fhir:
        response, elapsed = post_timed(fault_app, body_with_server(fhir.base_url, token=TOKEN))
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "unavailable"
    assert "the order's reason could not be retrieved" in card["detail"]
    assert "could not be retrieved: the order's reason Condition/c-crps" in caplog.text
    assert words in caplog.text and words not in card["detail"]
    assert card["extension"][EXT]["policyBasis"] == "default"
    assert elapsed < DEADLINE + MARGIN


def test_stopped_fhir_server_gives_an_unavailable_indication_card_quickly(fault_app, caplog):
    caplog.set_level(logging.INFO)
    response, elapsed = post_timed(fault_app, body_with_server(closed_port_url(), token=TOKEN))
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "unavailable"
    assert "could not connect to the FHIR server" in caplog.text
    assert elapsed < DEADLINE + MARGIN


def test_unretrievable_medication_reference_answers_412_within_the_deadline(fault_app):
    order = ketamine_order(None)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/ketamine-vial"}
    with fake_fhir(lambda _path: Reply(503, b"")) as fhir:
        response, elapsed = post_timed(fault_app, body_with_server(fhir.base_url, order, token=TOKEN))
    assert response.status_code == 412
    payload = response.get_json()
    assert payload["resourceType"] == "OperationOutcome"
    assert "Medication/ketamine-vial" in payload["issue"][0]["diagnostics"]
    assert elapsed < DEADLINE + MARGIN


def test_slow_coverage_search_still_answers_with_the_default_policy_and_says_why(fault_app, caplog):
    caplog.set_level(logging.INFO)
    def answer(path: str) -> Reply:
        return Reply(200, b"{}", delay=2.0) if path.startswith("/fhir/Coverage") else healthy(path)

    with fake_fhir(answer) as fhir:
        response, elapsed = post_timed(fault_app, body_with_server(fhir.base_url, token=TOKEN))
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "order"  # the reason Condition was read in time
    assert card["extension"][EXT]["policyBasis"] == "default"
    assert "The patient's coverage could not be checked" in card["detail"]
    assert "could not be retrieved: the patient's coverage" in caplog.text
    assert elapsed < DEADLINE + MARGIN


def test_access_token_is_sent_as_bearer_and_never_logged(fault_app, caplog):
    caplog.set_level(logging.DEBUG)
    with fake_fhir(healthy) as fhir:
        response, _ = post_timed(fault_app, body_with_server(fhir.base_url, token=TOKEN))
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["extension"][EXT]["family"] == "crps"
    assert fhir.requests, "the FHIR server was not queried"
    assert {r.headers.get("Authorization") for r in fhir.requests} == {f"Bearer {TOKEN}"}
    assert any(r.path.startswith("/fhir/Coverage?") and "patient=p1" in r.path and "status=active" in r.path
               for r in fhir.requests)
    assert TOKEN not in caplog.text
    assert TOKEN not in response.get_data(as_text=True)


def test_access_token_is_not_logged_when_the_server_rejects_it(fault_app, caplog):
    caplog.set_level(logging.DEBUG)
    with fake_fhir(lambda _path: Reply(401, b"")) as fhir:
        post_timed(fault_app, body_with_server(fhir.base_url, token=TOKEN))
    assert "HTTP 401" in caplog.text
    assert TOKEN not in caplog.text


def test_open_loopback_server_is_queried_without_a_token_by_default(fault_app):
    with fake_fhir(healthy) as fhir:
        response, _ = post_timed(fault_app, body_with_server(fhir.base_url))
    assert response.get_json()["cards"][0]["extension"][EXT]["family"] == "crps"
    assert fhir.requests
    assert all("Authorization" not in r.headers for r in fhir.requests)


def test_server_is_not_queried_without_a_token_when_configuration_forbids_it(caplog):
    caplog.set_level(logging.INFO)
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "FHIR_ALLOW_UNAUTHENTICATED": "never"})
    with fake_fhir(healthy) as fhir:
        response, _ = post_timed(app, body_with_server(fhir.base_url))
    assert fhir.requests == []
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "unavailable"
    assert "FHIR server not queried" in caplog.text and "FHIR" not in card["detail"]


def test_next_link_to_another_server_is_not_followed(fault_app, caplog):
    caplog.set_level(logging.INFO)
    first_page = searchset(condition(icd("I10"), id="c-htn"))
    first_page["link"] = [{"relation": "next", "url": "https://elsewhere.invalid/fhir/Condition?page=2"}]
    body = body_with_server("http://127.0.0.1:9/fhir", ketamine_order(None), token=TOKEN,
                            prefetch={"conditions": first_page, "coverage": searchset()})
    response, _ = post_timed(fault_app, body)
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "the rest of the list could not be retrieved" in card["detail"]
    assert "next page of Condition is not on fhirServer" in caplog.text


@pytest.mark.parametrize(("url", "token", "mode", "allowed"), [
    ("http://127.0.0.1:8080/fhir", None, "loopback", True),
    ("http://127.4.5.6/fhir", None, "loopback", True),
    ("http://localhost:8080/fhir", None, "loopback", True),
    ("http://[::1]:8080/fhir", None, "loopback", True),
    ("https://ehr.example.org/fhir", None, "loopback", False),
    ("http://10.0.0.5/fhir", None, "loopback", False),
    ("https://ehr.example.org/fhir", None, "always", True),
    ("http://127.0.0.1:8080/fhir", None, "never", False),
    ("https://ehr.example.org/fhir", "tok", "never", True),
    ("ftp://127.0.0.1/fhir", "tok", "always", False),
])
def test_unauthenticated_queries_follow_configuration(url, token, mode, allowed):
    assert (query_permission(url, token is not None, mode) is None) == allowed


def test_hanging_server_with_default_limits_answers_within_the_default_deadline():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False})
    settings = app.config
    with fake_fhir(lambda _path: Reply(200, b"{}", delay=5.0)) as fhir:
        response, elapsed = post_timed(app, body_with_server(fhir.base_url, token=TOKEN))
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["extension"][EXT]["basis"] == "unavailable"
    assert elapsed < settings["FHIR_TOTAL_DEADLINE"] + MARGIN


def test_searchset_reporting_an_error_is_no_answer_about_the_coverage(fault_app):
    failed = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}}]}

    def answer(path: str) -> Reply:
        return json_reply(failed) if path.startswith("/fhir/Coverage?") else healthy(path)

    with fake_fhir(answer) as fhir:
        response, _ = post_timed(fault_app, body_with_server(fhir.base_url, token=TOKEN))
    [card] = response.get_json()["cards"]
    assert "The patient's coverage could not be checked" in card["detail"]
