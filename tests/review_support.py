"""Builders for realistic hook requests and feedback used by the storage and review tests."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

ORDER_SIGN = "iv-anesthetics-order-sign"
BASE_REQUEST = json.loads((Path(__file__).parent / "data" / "order-sign-ketamine-crps.json").read_text())
KETAMINE = ("238084", "ketamine 50 MG/ML Injectable Solution")
LIDOCAINE = ("6387", "lidocaine")
OVERRIDE_SYSTEM = "urn:iv-anesthetics-cds:override-reason:bcbsks-iv-anesthetics"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def hook_request(icd10: str = "G90.511", drug: tuple[str, str] = KETAMINE, *,
                 patient: str = "pat1", token: str | None = None) -> dict[str, Any]:
    """An order-sign request for an IV order of ``drug`` with reasonCode ``icd10``."""
    body = copy.deepcopy(BASE_REQUEST)
    body["hookInstance"] = str(uuid.uuid4())
    body["context"]["patientId"] = patient
    for entry in body["prefetch"].get("coverage", {}).get("entry", []):  # the patient's own coverage
        entry["resource"]["beneficiary"] = {"reference": f"Patient/{patient}"}
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["id"] = f"mr-{uuid.uuid4().hex[:8]}"
    order["medicationCodeableConcept"]["coding"][0].update(system=RXNORM, code=drug[0], display=drug[1])
    order["reasonCode"][0]["coding"][0].update(code=icd10, display=f"condition {icd10}")
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/Patient.read", "subject": "cds-service"}
    return body


def override(card: str, code: str = "prior-auth-on-file", comment: str | None = None,
             when: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    reason: dict[str, Any] = {"reason": {"system": OVERRIDE_SYSTEM, "code": code}}
    if comment:
        reason["userComment"] = comment
    return {"card": card, "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": when}


def accepted(card: str, when: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
            "outcomeTimestamp": when}


def call(client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/{ORDER_SIGN}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


ORDER_SELECT = "iv-anesthetics-order-select"


def order_select_request(order_id: str, icd10: str = "G90.511", drug: tuple[str, str] = KETAMINE, *,
                         patient: str = "pat1") -> dict[str, Any]:
    """An order-select request for the draft order ``order_id``, as the sandbox sends on each form change."""
    body = hook_request(icd10, drug, patient=patient)
    body["hook"] = "order-select"
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["id"] = order_id
    body["context"]["selections"] = [f"MedicationRequest/{order_id}"]
    return body


def select_call(client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/{ORDER_SELECT}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]
