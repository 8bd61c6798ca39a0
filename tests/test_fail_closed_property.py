"""Property: the fast raw-bytes scan never silences a card the full parse would give.

For generated in-scope orders (IV ketamine or lidocaine for an indication the policy calls
experimental/investigational), written in every encoding, escaping and shape a client might
use, the answer carries the card or is a 4xx OperationOutcome: never an empty 200, never a 5xx.
"""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.terminology import ICD10CM, NDC, RXNORM, SNOMED

OIDS = {RXNORM: "urn:oid:2.16.840.1.113883.6.88", SNOMED: "urn:oid:2.16.840.1.113883.6.96",
        ICD10CM: "urn:oid:2.16.840.1.113883.6.90", NDC: "urn:oid:2.16.840.1.113883.6.69"}
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
             "utf-32-be"]
# (system, code, display) of in-scope products, from cards/valuesets/medication-*-iv.json.
PRODUCTS = [
    (RXNORM, "238084", "ketamine 50 MG/ML Injectable Solution"),
    (RXNORM, "238082", "ketamine 10 MG/ML Injectable Solution"),
    (NDC, "68055-643-01", ""),  # lidocaine, NDC 68055064301 in 5-3-2 form
    (NDC, "68055064301", ""),
    (None, "", "ketamine 50 MG/ML Injectable Solution"),  # text only
    (None, "", "Lidocaine 1% Injectable Solution"),
]
# Reasons the policies call experimental/investigational, from the indication value sets.
REASONS = [(ICD10CM, "F33.2"), (ICD10CM, "F332"), (ICD10CM, "G90.511"), (ICD10CM, "M79.7"),
           (SNOMED, "370143000")]
IV_ROUTES = [{"coding": [{"system": SNOMED, "code": "47625008"}]},
             {"coding": [{"system": OIDS[SNOMED], "code": "47625008"}]},
             {"text": "IV"}, {"text": "Intravenous"}]


def system_spelling(system: str, use_oid: bool) -> str:
    return OIDS.get(system, system) if use_oid else system


@st.composite
def in_scope_requests(draw) -> dict:
    system, code, display = draw(st.sampled_from(PRODUCTS))
    use_oid = draw(st.booleans())
    if system is None:
        medication: dict = {"text": display}
    else:
        padding = draw(st.sampled_from(["", " ", "\t", "\n "]))  # the parser strips it
        coding = {"system": system_spelling(system, use_oid), "code": padding + code}
        if display:
            coding["display"] = display
        medication = {"coding": [coding]}
    reason_system, reason_code = draw(st.sampled_from(REASONS))
    reason = {"coding": [{"system": system_spelling(reason_system, draw(st.booleans())), "code": reason_code}]}
    dosage = {"route": draw(st.sampled_from(IV_ROUTES))}
    singles = draw(st.booleans())  # the sandbox's single objects where R4 has arrays
    order = {
        "resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "category": {"coding": [{"code": "outpatient"}]} if singles else [{"coding": [{"code": "outpatient"}]}],
        "medicationCodeableConcept": medication,
        "reasonCode": reason if singles else [reason],
        "dosageInstruction": [dosage],
    }
    hook = draw(st.sampled_from(["order-sign", "order-select"]))
    context = {"userId": "Practitioner/u1", "patientId": "p1",
               "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}}
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/mr1"]
    return {"hook": hook, "hookInstance": "6f1c2d7e-0000-4000-8000-000000000002", "context": context}


def dumps(value, rng: random.Random, escape_share: float, ensure_ascii: bool) -> str:
    """JSON text in which a share of the characters of every string is written as a \\u escape."""
    if isinstance(value, str):
        out = []
        for ch in value:
            if rng.random() < escape_share:
                out.append("".join(f"\\u{unit:04x}" for unit in _utf16_units(ch)))
            else:
                out.append(json.dumps(ch, ensure_ascii=ensure_ascii)[1:-1])
        return '"' + "".join(out) + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(k, rng, escape_share, ensure_ascii)}: "
                               f"{dumps(v, rng, escape_share, ensure_ascii)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v, rng, escape_share, ensure_ascii) for v in value) + "]"
    return json.dumps(value)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                   HealthCheck.function_scoped_fixture])
@given(request=in_scope_requests(), encoding=st.sampled_from(ENCODINGS),
       escape_share=st.sampled_from([0.0, 0.05, 0.3, 1.0]), ensure_ascii=st.booleans(),
       seed=st.integers(0, 2**16))
def test_in_scope_order_gets_its_card_or_a_4xx_under_every_encoding_and_escaping(
        client, request, encoding, escape_share, ensure_ascii, seed):
    text = dumps(request, random.Random(seed), escape_share, ensure_ascii)
    assert json.loads(text) == request  # the parser reads exactly the generated request
    url = f"/cds-services/iv-anesthetics-{request['hook']}"
    response = client.post(url, data=text.encode(encoding), content_type="application/json")
    if encoding not in ("utf-8", "utf-8-sig") and 400 <= response.status_code < 500:
        assert response.get_json()["resourceType"] == "OperationOutcome"
        return
    # UTF-8, with or without a byte order mark, is always read, and read to the card.
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"], "an in-scope order got an empty 200"
