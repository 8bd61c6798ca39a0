"""Property tests: arbitrary JSON and FHIR-shaped data never cause a 500, and answers are stable."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import create_app
from cds_service.errors import ApiError
from cds_service.gather import DataSource
from cds_service.hook_request import parse_body, validate_envelope
from cds_service.screening import screen_orders

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UUID_RE = re.compile(r'"uuid":\s*"[0-9a-f-]{36}"')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                         max_size=4),
    max_leaves=25,
)

# FHIR-shaped pieces, biased towards what the screening and decision code look at.
SYSTEMS = ["http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct",
           "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/ndc", "urn:x", ""]
CODES = ["6130", "6387", "238084", "1011", "47625008", "78421000", "G90.511", "F33.1", "M79.7",
         "J3490", "G89.4", "", "x"]
WORDS = ["ketamine", "lidocaine", "intravenous", "IV", "Intravenous route", "oral", "depression",
         "chronic pain", "anesthesia", "", "esketamine"]
texts = st.sampled_from(WORDS) | st.text(max_size=12)
codings = st.fixed_dictionaries({}, optional={
    "system": st.sampled_from(SYSTEMS) | st.integers(), "code": st.sampled_from(CODES) | st.none(),
    "display": texts})
concepts = st.fixed_dictionaries({}, optional={
    "coding": st.lists(codings, max_size=3) | json_values, "text": texts | st.integers()})
references = st.fixed_dictionaries({}, optional={
    "reference": st.sampled_from(["Condition/c1", "Medication/m1", "#med", "#c", "Patient/p1"]) | texts})
conditions = st.fixed_dictionaries({"resourceType": st.just("Condition")}, optional={
    "id": st.sampled_from(["c1", "c", "x"]), "code": concepts,
    "clinicalStatus": concepts, "subject": references})
medications = st.fixed_dictionaries({"resourceType": st.just("Medication")}, optional={
    "id": st.sampled_from(["m1", "med"]), "code": concepts, "form": concepts,
    "ingredient": st.lists(st.fixed_dictionaries({}, optional={"itemCodeableConcept": concepts}),
                           max_size=2)})
dosages = st.fixed_dictionaries({}, optional={
    "route": concepts | json_values, "text": texts,
    "doseAndRate": st.lists(st.fixed_dictionaries({}, optional={
        "rateQuantity": json_values, "doseQuantity": json_values}), max_size=2)})
medication_requests = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["MedicationRequest", "MedicationOrder", "ServiceRequest"])},
    optional={
        "id": st.sampled_from(["mr1", "mr2"]) | st.text(max_size=5),
        "status": st.sampled_from(["draft", "active", "cancelled"]) | json_values,
        "intent": st.just("order"),
        "medicationCodeableConcept": concepts | json_values,
        "medicationReference": references | json_values,
        "reasonCode": st.lists(concepts, max_size=2) | json_values,
        "reasonReference": st.lists(references, max_size=2) | json_values,
        "dosageInstruction": st.lists(dosages, max_size=2) | json_values,
        "contained": st.lists(conditions | medications, max_size=2) | json_values,
        "subject": references,
    })
full_urls = st.sampled_from(["urn:uuid:1", "MedicationRequest/mr1"])
entries = st.fixed_dictionaries({"resource": medication_requests | conditions | medications},
                                optional={"fullUrl": full_urls})
bundles = st.fixed_dictionaries({"resourceType": st.just("Bundle")},
                                optional={"type": st.just("searchset"),
                                          "entry": st.lists(entries, max_size=3) | json_values})
hook_requests = st.builds(
    lambda hook, context, prefetch, extra: {"hook": hook, "hookInstance": "abc", "context": context,
                                            **({"prefetch": prefetch} if prefetch is not None else {}),
                                            **extra},
    st.sampled_from(["order-sign", "order-select"]),
    st.fixed_dictionaries({"userId": st.just("Practitioner/1"), "patientId": st.just("p1"),
                           "draftOrders": bundles},
                          optional={"selections": st.lists(st.sampled_from(
                              ["MedicationRequest/mr1", "urn:uuid:1", "x"]), max_size=2) | json_values,
                              "encounterId": texts}),
    st.none() | st.fixed_dictionaries({}, optional={
        "conditions": bundles | st.none() | json_values,
        "coverage": bundles | st.none(),
        "patient": st.just({"resourceType": "Patient", "id": "p1"}) | json_values}),
    st.fixed_dictionaries({}, optional={"fhirServer": st.just("http://127.0.0.1:9/fhir")}),
)


@pytest.fixture(scope="module")
def fuzz_app():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False})
    app.extensions["cds"].data_source_factory = DataSource  # prefetch only: never any network
    return app


def answer(http, service: str, body: bytes) -> tuple[int, str]:
    response = http.post(f"/cds-services/{service}", data=body, content_type="application/json")
    assert response.status_code != 500 and response.status_code < 500, response.get_data(as_text=True)
    return response.status_code, UUID_RE.sub('"uuid": "-"', response.get_data(as_text=True))


def service_for(body: object) -> str:
    hook = body.get("hook") if isinstance(body, dict) else None
    return "iv-anesthetics-order-select" if hook == "order-select" else "iv-anesthetics-order-sign"


# --- the parser -----------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parser_answers_every_body_with_a_value_or_a_400_or_415(body):
    for _ in range(2):  # and the same way twice
        try:
            data = parse_body(body)
        except ApiError as error:
            assert error.status in (400, 415)  # 415: not UTF-8
            continue
        assert isinstance(data, dict)
        try:
            validate_envelope(data, expected_hook="order-sign")
        except ApiError as error:
            assert error.status == 400 and error.issues


@FUZZ
@given(hook_requests)
def test_envelope_validation_of_fhir_shaped_requests(body):
    outcomes = []
    for _ in range(2):
        try:
            request = validate_envelope(body, expected_hook=body["hook"])
            outcomes.append(("ok", request.hook, request.selections))
        except ApiError as error:
            assert error.status == 400
            outcomes.append(("400", str(error)))
    assert outcomes[0] == outcomes[1]


# --- the screening --------------------------------------------------------------------------

@FUZZ
@given(st.lists(st.tuples(st.none() | st.text(max_size=8), medication_requests), max_size=4),
       st.none() | st.lists(st.sampled_from(["MedicationRequest/mr1", "urn:uuid:1", "x"]), max_size=2)
       .map(tuple),
       st.dictionaries(st.sampled_from(["Medication/m1", "#med"]), medications, max_size=2))
def test_screening_never_raises_and_is_deterministic(fuzz_app, orders, selections, meds):
    rules = fuzz_app.extensions["cds"].knowledge.medications

    def resolve(reference, order):
        return meds.get(reference)

    first = screen_orders(orders, selections, resolve, rules)
    second = screen_orders(orders, selections, resolve, rules)
    assert first == second
    assert first.considered <= len(orders)
    assert len(first.in_scope) + len(first.unresolved) <= first.considered


# --- the whole endpoint ---------------------------------------------------------------------

@FUZZ
@given(json_values)
def test_endpoint_never_500s_on_arbitrary_json(fuzz_app, value):
    http = fuzz_app.test_client()
    body = json.dumps(value).encode()
    assert answer(http, "iv-anesthetics-order-sign", body) == answer(http, "iv-anesthetics-order-sign", body)


@FUZZ
@given(hook_requests)
def test_endpoint_never_500s_on_fhir_shaped_requests(fuzz_app, value):
    http = fuzz_app.test_client()
    body = json.dumps(value).encode()
    first = answer(http, service_for(value), body)
    assert first == answer(http, service_for(value), body)
    assert first[0] in (200, 400, 412)


# --- in-scope drugs with arbitrary shapes everywhere else ---------------------------------------
# A target drug is what sends an order down the slow path; pin it, and let everything the
# screening and decision code read next (dosage, route, reasons, contained) be arbitrary.
target_medications = st.sampled_from([
    {"coding": [{"system": SYSTEMS[0], "code": "238084"}]},
    {"coding": [{"system": SYSTEMS[0], "code": "1737742"}]},
    {"text": "Ketamine 50 mg/mL injection"},
])
in_scope_orders = st.fixed_dictionaries(
    {"resourceType": st.just("MedicationRequest"), "id": st.just("mr1"), "status": st.just("draft"),
     "intent": st.just("order"), "subject": st.just({"reference": "Patient/p1"}),
     "medicationCodeableConcept": target_medications},
    optional={
        "dosageInstruction": st.lists(dosages | json_values, max_size=2) | json_values,
        "reasonCode": st.lists(concepts | json_values, max_size=2) | json_values,
        "reasonReference": st.lists(references | json_values, max_size=2) | json_values,
        "contained": st.lists(conditions | medications | json_values, max_size=2) | json_values,
    })


@FUZZ
@given(in_scope_orders, st.none() | bundles | json_values)
def test_target_drug_orders_with_arbitrary_shapes_never_500(fuzz_app, order, conditions_prefetch):
    body = {"hook": "order-sign", "hookInstance": "abc",
            "context": {"userId": "Practitioner/1", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}},
            "prefetch": {"conditions": conditions_prefetch}}
    raw = json.dumps(body).encode()
    http = fuzz_app.test_client()
    first = answer(http, "iv-anesthetics-order-sign", raw)
    assert first == answer(http, "iv-anesthetics-order-sign", raw)
    assert first[0] in (200, 400)
