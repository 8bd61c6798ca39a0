"""Small builders for FHIR-shaped dicts used by the unit tests."""

from __future__ import annotations

from cds_service.terminology import HCPCS, ICD10CM, RXNORM, SNOMED

IV = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}
IM = {"coding": [{"system": SNOMED, "code": "78421000", "display": "Intramuscular route"}]}


def rxnorm(code: str, display: str = "") -> dict:
    coding = {"system": RXNORM, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def icd(code: str, display: str = "") -> dict:
    coding = {"system": ICD10CM, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def hcpcs(code: str) -> dict:
    return {"system": HCPCS, "code": code}


def med_request(medication: dict | None = None, *, route: dict | None = IV, reason: list | None = None,
                rate: bool = False, id: str = "mr1", **extra) -> dict:
    dosage: dict = {}
    if route is not None:
        dosage["route"] = route
    if rate:
        dosage["doseAndRate"] = [{"rateQuantity": {"value": 20, "unit": "mg/h"}}]
    order = {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [dosage] if dosage else [],
        **extra,
    }
    if medication is not None:
        order["medicationCodeableConcept"] = medication
    if reason is not None:
        order["reasonCode"] = reason
    return order


def hook_request(*orders: dict, hook: str = "order-sign", prefetch: dict | None = None,
                 selections: list[str] | None = None) -> dict:
    context = {
        "userId": "Practitioner/u1",
        "patientId": "p1",
        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                        "entry": [{"resource": o} for o in orders]},
    }
    if selections is not None:
        context["selections"] = selections
    body = {"hook": hook, "hookInstance": "6f1c2d7e-0000-4000-8000-000000000001", "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def searchset(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def condition(code: dict, id: str = "c1", status: str = "active") -> dict:
    return {
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
        "code": code,
        "subject": {"reference": "Patient/p1"},
    }
