"""HTTP behaviour: discovery, errors as OperationOutcome, the cheap common path."""

from __future__ import annotations

import json
import re

from cds_service import create_app

from .cds_response_rules import discovery_problems
from .factories import hook_request, icd, med_request, rxnorm

SIGN = "/cds-services/iv-anesthetics-order-sign"
SELECT = "/cds-services/iv-anesthetics-order-select"
ALLOWED_TOKEN = re.compile(r"\{\{(context\.(patientId|userId|encounterId)|userPractitionerId|"
                           r"userPractitionerRoleId|userPatientId|userRelatedPersonId)\}\}")


def test_discovery_lists_a_sign_and_a_select_service_with_distinct_ids(client):
    payload = client.get("/cds-services").get_json()
    assert not discovery_problems(payload)
    hooks = {s["id"]: s["hook"] for s in payload["services"]}
    assert sorted(hooks.values()) == ["order-select", "order-sign"]
    assert len(hooks) == 2


def test_prefetch_templates_use_only_allowed_tokens(client):
    for service in client.get("/cds-services").get_json()["services"]:
        assert {"patient", "conditions", "coverage"} <= set(service["prefetch"])
        for template in service["prefetch"].values():
            assert "draftOrders" not in template
            for token in re.findall(r"\{\{[^}]*\}\}", template):
                assert ALLOWED_TOKEN.fullmatch(token), token


def assert_outcome(response, status, text=""):
    assert response.status_code == status
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert text in json.dumps(body)
    return body


def test_unknown_service_is_404_with_operation_outcome(client):
    assert_outcome(client.post("/cds-services/nope", json={}), 404, "Unknown CDS service")


def test_body_that_is_not_json_is_400(client):
    assert_outcome(client.post(SIGN, data=b"{not json", content_type="application/json"), 400, "not valid JSON")


def test_empty_body_is_400(client):
    assert_outcome(client.post(SIGN, data=b"", content_type="application/json"), 400, "empty")


def test_hook_for_another_service_is_400(client):
    body = hook_request(med_request(rxnorm("238084")), hook="order-select", selections=["MedicationRequest/mr1"])
    assert_outcome(client.post(SIGN, json=body), 400, "order-sign")


def test_ill_typed_field_is_400_naming_the_field(client):
    body = hook_request()
    body["context"]["patientId"] = 42
    assert_outcome(client.post(SIGN, json=body), 400, "context.patientId")


def test_oversized_body_is_413():
    small = create_app({"AUTH_ENABLED": False, "MAX_CONTENT_LENGTH": 1000})
    response = small.test_client().post(SIGN, data=b" " * 2000, content_type="application/json")
    assert_outcome(response, 413, "larger than the limit")


def test_wrong_method_is_405_with_operation_outcome(client):
    assert_outcome(client.get(SIGN), 405)


def test_unknown_fields_are_ignored(client):
    body = hook_request(med_request(rxnorm("238084"), reason=[icd("F33.2")]))
    body["somethingNew"] = {"x": 1}
    body["context"]["vendorExtra"] = True
    assert len(client.post(SIGN, json=body).get_json()["cards"]) == 1


def test_unreadable_route_of_in_scope_order_is_400_not_a_guess(client):
    order = med_request(rxnorm("238084"), reason=[icd("F33.2")], route=None)
    order["dosageInstruction"] = [{"route": "IV"}]  # a string where a CodeableConcept belongs
    assert_outcome(client.post(SIGN, json=hook_request(order)), 400,
                   "MedicationRequest/mr1: dosageInstruction[0].route")


def test_unreadable_reason_of_in_scope_order_is_400_not_a_guess(client):
    order = med_request(rxnorm("238084"), reason=[{"coding": [{"system": 5, "code": "F33.2"}]}])
    assert_outcome(client.post(SIGN, json=hook_request(order)), 400, "reasonCode[0].coding")


def test_medication_that_is_not_an_object_is_400_when_the_scan_saw_a_target(client):
    order = med_request(None, reason=[icd("F33.2")], medicationCodeableConcept="ketamine 50 mg/mL")
    assert_outcome(client.post(SIGN, json=hook_request(order)), 400,
                   "medicationCodeableConcept cannot be read")


def test_malformed_field_the_decision_does_not_read_does_not_change_the_decision(client):
    well_formed = med_request(rxnorm("238084"), reason=[icd("F33.2")])
    sloppy = dict(well_formed, subject="Patient/p1", note="a string where Annotations belong",
                  dispenseRequest={"quantity": "ten"}, authoredOn="yesterday")
    cards = [client.post(SIGN, json=hook_request(o)).get_json()["cards"] for o in (well_formed, sloppy)]
    assert len(cards[1]) == 1
    assert cards[1][0]["summary"] == cards[0][0]["summary"]
    assert cards[1][0]["detail"] == cards[0][0]["detail"]


def test_unresolvable_medication_reference_is_412(client):
    order = med_request(None, medicationReference={"reference": "Medication/elsewhere"})
    assert_outcome(client.post(SIGN, json=hook_request(order)), 412, "Medication/elsewhere")


def test_orders_for_other_drugs_never_reach_normalising_or_fhir_model_parsing(client, monkeypatch):
    from cds_service import pipeline

    def explode(*_a, **_k):
        raise AssertionError("R4B parsing on the common path")

    monkeypatch.setattr(pipeline, "normalize_request", explode)
    monkeypatch.setattr(pipeline, "_validate_orders", explode)
    body = hook_request(med_request(rxnorm("199390", "Etodolac 500 MG Oral Tablet"), reason=[icd("F33.2")]))
    response = client.post(SIGN, json=body)
    assert response.get_json() == {"cards": []}


def test_order_select_checks_only_selected_orders(client):
    orders = [med_request(rxnorm("238084"), reason=[icd("F33.2")], id="a"),
              med_request(rxnorm("199390"), id="b")]
    quiet = hook_request(*orders, hook="order-select", selections=["MedicationRequest/b"])
    fires = hook_request(*orders, hook="order-select", selections=["MedicationRequest/a"])
    assert client.post(SELECT, json=quiet).get_json() == {"cards": []}
    assert len(client.post(SELECT, json=fires).get_json()["cards"]) == 1
