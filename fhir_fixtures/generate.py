"""Generate the CDS Hooks request fixtures in this folder.

Run from the repository root:  python fhir_fixtures/generate.py
It rewrites hook-requests/, hook-requests-fhir/ and fhir-server/seed-bundle.json.
Output is deterministic (fixed UUID seed), so re-running gives identical files.

Every code used here comes from shared/reference/codes-and-evidence.md (confirmed entries),
except: RxNorm 199390 (Etodolac, taken from the CDS Hooks sandbox capture in
shared/reference/cds-hooks.md) and ICD-10-CM I10 (checked with simple-icd-10-cm 1.5.0).
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQ_DIR = HERE / "hook-requests"
REQ_FHIR_DIR = HERE / "hook-requests-fhir"
SERVER_DIR = HERE / "fhir-server"

FHIR_BASE = "http://127.0.0.1:9/fhir"
SIGN = "iv-anesthetics-order-sign"
SELECT = "iv-anesthetics-order-select"
POLICY_MN = "bcbsmn-ii-271"
POLICY_KS = "bcbsks-iv-anesthetics"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
UCUM = "http://unitsofmeasure.org"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
MR_CAT = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
DOSE_RATE_TYPE = "http://terminology.hl7.org/CodeSystem/dose-rate-type"

_rng = random.Random(20260521)


def new_uuid() -> str:
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))


def coding(system: str, code: str, display: str | None = None) -> dict:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def cc(*codings: dict, text: str | None = None) -> dict:
    out: dict = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def qty(value: float, unit: str, code: str | None = None) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


# ---------------------------------------------------------------- terminology (reference)
ICD = {
    "G90.511": "Complex regional pain syndrome I of right upper limb",
    "G90.522": "Complex regional pain syndrome I of left lower limb",
    "M79.7": "Fibromyalgia",
    "B02.29": "Other postherpetic nervous system involvement",
    "E11.42": "Type 2 diabetes mellitus with diabetic polyneuropathy",
    "G43.709": "Chronic migraine without aura, not intractable, without status migrainosus",
    "G89.4": "Chronic pain syndrome",
    "G89.29": "Other chronic pain",
    "G89.0": "Central pain syndrome",
    "M79.2": "Neuralgia and neuritis, unspecified",
    "G54.6": "Phantom limb syndrome with pain",
    "G44.229": "Chronic tension-type headache, not intractable",
    "F33.2": "Major depressive disorder, recurrent severe without psychotic features",
    "F32.2": "Major depressive disorder, single episode, severe without psychotic features",
    "F43.12": "Post-traumatic stress disorder, chronic",
    "F42.2": "Mixed obsessional thoughts and acts",
    "F31.81": "Bipolar II disorder",
    "I47.20": "Ventricular tachycardia, unspecified",
    "I47.0": "Re-entry ventricular arrhythmia",
    "I47.21": "Torsades de pointes",
    "I47.29": "Other ventricular tachycardia",
    "I49.01": "Ventricular fibrillation",
    "I49.02": "Ventricular flutter",
    "I49.3": "Ventricular premature depolarization",
    "I46.2": "Cardiac arrest due to underlying cardiac condition",
    "G89.3": "Neoplasm related pain (acute) (chronic)",
    "G89.11": "Acute pain due to trauma",
    "G89.12": "Acute post-thoracotomy pain",
    "G89.18": "Other acute postprocedural pain",
    "R52": "Pain, unspecified",
    # Not in the reference; verified with simple-icd-10-cm 1.5.0 (FY2026 April files).
    "I10": "Essential (primary) hypertension",
}
SNOMED = {
    "128200000": "Complex regional pain syndrome (disorder)",
    "203082005": "Fibromyalgia (disorder)",
    "2177002": "Postherpetic neuralgia (disorder)",
    "230572002": "Neuropathy due to diabetes mellitus (disorder)",
    "370143000": "Major depressive disorder (disorder)",
    "47505003": "Posttraumatic stress disorder (disorder)",
    "191736004": "Obsessive-compulsive disorder (disorder)",
    "13746004": "Bipolar disorder (disorder)",
    "25569003": "Ventricular tachycardia (disorder)",
    "50697003": "General anesthesia (procedure)",
    "82423001": "Chronic pain (finding)",
}
ROUTE = {
    "iv": coding(SCT, "47625008", "Intravenous route"),
    "im": coding(SCT, "78421000", "Intramuscular route"),
    "sc": coding(SCT, "34206005", "Subcutaneous route"),
    "topical": coding(SCT, "6064005", "Topical route"),
    "nasal": coding(SCT, "46713006", "Nasal route"),
    "oral": coding(SCT, "26643006", "Oral route"),
}


def icd(code: str) -> dict:
    return coding(ICD10, code, ICD[code])


def sct(code: str) -> dict:
    return coding(SCT, code, SNOMED[code])


# Medications: (rxcui, RxNorm name, optional NDC)
MEDS = {
    "ket10": ("238082", "ketamine 10 MG/ML Injectable Solution", None),
    "ket50": ("238084", "ketamine 50 MG/ML Injectable Solution", "0409-2053-10"),
    "ketalar50": ("206972", "ketamine 50 MG/ML Injectable Solution [Ketalar]", "42023-114-10"),
    "lido10": ("1010033", "lidocaine hydrochloride 10 MG/ML Injectable Solution", "0409-4276-01"),
    "lido20": ("1010671", "lidocaine hydrochloride 20 MG/ML Injectable Solution", None),
    "lido_bag250": ("1737742", "250 ML lidocaine hydrochloride 4 MG/ML Injection", "0338-0409-02"),
    "lido_bag500": ("1737744", "500 ML lidocaine hydrochloride 4 MG/ML Injection", "0338-0409-03"),
    "lido_patch": ("1745091", "lidocaine 0.05 MG/MG Medicated Patch", None),
    "lido_epi": (
        "1010751",
        "epinephrine 0.01 MG/ML / lidocaine hydrochloride 10 MG/ML Injectable Solution",
        None,
    ),
    "esketamine": ("2119381", "esketamine 140 MG/ML Nasal Spray", None),
    "etodolac": ("199390", "Etodolac 500 MG Oral Tablet", None),
}


def med_cc(key: str, *extra: dict) -> dict:
    rxcui, name, ndc = MEDS[key]
    codings = [coding(RXNORM, rxcui, name)]
    if ndc:
        codings.append(coding(NDC, ndc))
    codings.extend(extra)
    return cc(*codings, text=name)


def medication_resource(mid: str, key: str) -> dict:
    """A Medication resource for an injectable ketamine product (ingredient IN 6130)."""
    res = {"resourceType": "Medication", "id": mid, "code": med_cc(key), "status": "active"}
    if key.startswith("ket"):
        strength = 50 if "50" in key else 10
        res["ingredient"] = [
            {
                "itemCodeableConcept": cc(coding(RXNORM, "6130", "ketamine")),
                "isActive": True,
                "strength": {
                    "numerator": qty(strength, "mg"),
                    "denominator": qty(1, "mL"),
                },
            }
        ]
    return res


# ---------------------------------------------------------------- resources
def patient(pid: str, family: str, given: list[str], gender: str, birth: str, mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "use": "usual",
                "type": cc(
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "MR",
                        "Medical Record Number",
                    )
                ),
                "system": "http://example.org/NamingSystem/mrn",
                "value": mrn,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": family, "given": given}],
        "gender": gender,
        "birthDate": birth,
    }


def condition(
    cid: str | None,
    pid: str,
    codings: list[dict],
    text: str,
    *,
    status: str = "active",
    category: str = "problem-list-item",
    onset: str = "2024-03-14",
    recorded: str = "2024-03-14",
) -> dict:
    res: dict = {"resourceType": "Condition"}
    if cid:
        res["id"] = cid
    res.update(
        {
            "clinicalStatus": cc(coding(COND_CLINICAL, status, status.capitalize())),
            "verificationStatus": cc(coding(COND_VER, "confirmed", "Confirmed")),
            "category": [
                cc(
                    coding(
                        COND_CAT,
                        category,
                        "Problem List Item"
                        if category == "problem-list-item"
                        else "Encounter Diagnosis",
                    )
                )
            ],
            "code": cc(*codings, text=text),
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset,
            "recordedDate": recorded,
        }
    )
    if status != "active":
        res["abatementDateTime"] = "2025-06-30"
    return res


def searchset(url: str, resources: list[dict], include: list[dict] | None = None) -> dict:
    entries = [
        {
            "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    entries += [
        {
            "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in include or []
    ]
    b = {
        "resourceType": "Bundle",
        "id": new_uuid(),
        "meta": {"lastUpdated": "2026-05-21T14:02:11Z"},
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{FHIR_BASE}/{url}"}],
    }
    if entries:
        b["entry"] = entries
    return b


def conditions_bundle(pid: str, conds: list[dict]) -> dict:
    return searchset(f"Condition?patient={pid}&clinical-status=active", conds)


def coverage_resource(pid: str, covid: str, payor: dict, member: str) -> dict:
    return {
        "resourceType": "Coverage",
        "id": covid,
        "identifier": [
            {
                "type": cc(
                    coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number")
                ),
                "system": "http://example.org/fhir/memberidentifier",
                "value": member,
            }
        ],
        "status": "active",
        "type": cc(
            coding(
                "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "PPO",
                "preferred provider organization policy",
            ),
            text="PPO",
        ),
        "subscriberId": member,
        "beneficiary": {"reference": f"Patient/{pid}"},
        "relationship": cc(
            coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self"),
            text="Self",
        ),
        "period": {"start": "2026-01-01"},
        "payor": [payor],
    }


def kansas_org(oid: str = "org-bcbsks") -> dict:
    # No identifier: no real identifier for BCBS Kansas is in the reference material.
    return {
        "resourceType": "Organization",
        "id": oid,
        "active": True,
        "type": [
            cc(
                coding(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "pay",
                    "Payer",
                )
            )
        ],
        "name": "Blue Cross and Blue Shield of Kansas",
    }


def coverage_mn(pid: str, member: str) -> dict:
    cov = coverage_resource(
        pid, f"cov-{pid}", {"display": "Blue Cross and Blue Shield of Minnesota"}, member
    )
    return searchset(f"Coverage?patient={pid}&status=active", [cov])


def coverage_ks(pid: str, member: str) -> dict:
    org = kansas_org()
    cov = coverage_resource(
        pid,
        f"cov-{pid}",
        {"reference": f"Organization/{org['id']}", "display": org["name"]},
        member,
    )
    return searchset(
        f"Coverage?patient={pid}&status=active&_include=Coverage:payor", [cov], include=[org]
    )


# ---------------------------------------------------------------- dosing
def iv_infusion(rate: float, rate_unit: str, hours: float, text: str, route: bool = True) -> list:
    d: dict = {
        "sequence": 1,
        "text": text,
        "timing": {"repeat": {"count": 1, "duration": hours, "durationUnit": "h"}},
    }
    if route:
        d["route"] = cc(ROUTE["iv"])
    d["doseAndRate"] = [
        {
            "type": cc(coding(DOSE_RATE_TYPE, "ordered", "Ordered")),
            "rateQuantity": qty(rate, rate_unit),
        }
    ]
    return [d]


def iv_weight_dose_infusion(dose_mg: float, rate_mg_h: float, hours: float, text: str) -> list:
    return [
        {
            "sequence": 1,
            "text": text,
            "timing": {"repeat": {"count": 1, "duration": hours, "durationUnit": "h"}},
            "route": cc(ROUTE["iv"]),
            "doseAndRate": [
                {
                    "type": cc(coding(DOSE_RATE_TYPE, "ordered", "Ordered")),
                    "doseQuantity": qty(dose_mg, "mg"),
                    "rateQuantity": qty(rate_mg_h, "mg/h"),
                }
            ],
        }
    ]


def ketamine_depression_course(route: str = "iv", dose_mg: float = 35) -> list:
    if route == "iv":
        text = f"Ketamine {dose_mg} mg (0.5 mg/kg) IV over 40 minutes, twice weekly x 3 weeks"
        timing = {
            "repeat": {
                "boundsDuration": qty(3, "wk"),
                "frequency": 2,
                "period": 1,
                "periodUnit": "wk",
                "duration": 40,
                "durationUnit": "min",
            }
        }
    else:
        text = f"Ketamine {dose_mg} mg (0.5 mg/kg) IM, twice weekly x 3 weeks"
        timing = {
            "repeat": {
                "boundsDuration": qty(3, "wk"),
                "frequency": 2,
                "period": 1,
                "periodUnit": "wk",
            }
        }
    return [
        {
            "sequence": 1,
            "text": text,
            "timing": timing,
            "route": cc(ROUTE[route]),
            "doseAndRate": [
                {
                    "type": cc(coding(DOSE_RATE_TYPE, "ordered", "Ordered")),
                    "doseQuantity": qty(dose_mg, "mg"),
                }
            ],
        }
    ]


def single_dose(route: str, dose: float, unit: str, text: str) -> list:
    return [
        {
            "sequence": 1,
            "text": text,
            "timing": {"repeat": {"count": 1}},
            "route": cc(ROUTE[route]),
            "doseAndRate": [
                {
                    "type": cc(coding(DOSE_RATE_TYPE, "ordered", "Ordered")),
                    "doseQuantity": qty(dose, unit),
                }
            ],
        }
    ]


# ---------------------------------------------------------------- orders and requests
def med_request(
    mrid: str,
    pid: str,
    *,
    med: dict,
    dosage: list | None,
    reason_code: list | None = None,
    reason_ref: list | None = None,
    contained: list | None = None,
    category: str = "outpatient",
    encounter: str | None = None,
    note: str | None = None,
    authored: str = "2026-05-21T09:14:00-05:00",
) -> dict:
    res: dict = {"resourceType": "MedicationRequest", "id": mrid}
    if contained:
        res["contained"] = contained
    res["status"] = "draft"
    res["intent"] = "order"
    res["category"] = [
        cc(coding(MR_CAT, category, "Inpatient" if category == "inpatient" else "Outpatient"))
    ]
    res.update(med)
    res["subject"] = {"reference": f"Patient/{pid}"}
    if encounter:
        res["encounter"] = {"reference": f"Encounter/{encounter}"}
    res["authoredOn"] = authored
    res["requester"] = {"reference": "Practitioner/prac-4471", "display": "Dr. Imani Okafor"}
    if reason_code:
        res["reasonCode"] = reason_code
    if reason_ref:
        res["reasonReference"] = reason_ref
    if note:
        res["note"] = [{"text": note}]
    if dosage:
        res["dosageInstruction"] = dosage
    return res


def entry(res: dict, full_url: str | None = None) -> dict:
    e: dict = {}
    if full_url is not None:
        e["fullUrl"] = full_url
    elif res.get("id"):
        e["fullUrl"] = f"{FHIR_BASE}/{res['resourceType']}/{res['id']}"
    e["resource"] = res
    return e


def draft_bundle(*entries: dict) -> dict:
    b: dict = {"resourceType": "Bundle", "id": new_uuid(), "type": "collection"}
    if entries:
        b["entry"] = list(entries)
    return b


def hook_request(
    hook: str,
    pid: str,
    draft: dict,
    prefetch: dict | None,
    *,
    selections: list[str] | None = None,
    encounter: str | None = None,
    fhir_server: str = FHIR_BASE,
) -> dict:
    ctx: dict = {"userId": "Practitioner/prac-4471", "patientId": pid}
    if encounter:
        ctx["encounterId"] = encounter
    if selections is not None:
        ctx["selections"] = selections
    ctx["draftOrders"] = draft
    req: dict = {
        "hookInstance": new_uuid(),
        "fhirServer": fhir_server,
        "hook": hook,
        "context": ctx,
    }
    if prefetch is not None:
        req["prefetch"] = prefetch
    return req


FIXTURES: list[dict] = []
FHIR_FIXTURES: list[dict] = []


def card(
    indicator: str,
    policy: str,
    section: str | None,
    family: str | None,
    basis: str,
    order: str,
) -> dict:
    return {
        "indicator": indicator,
        "policy": policy,
        "section": section,
        "family": family,
        "basis": basis,
        "order": order,
    }


def add(
    name: str,
    body,
    service: str,
    outcome: str,
    cards: list,
    note: str,
    status: int = 200,
    raw: str | None = None,
    target: list | None = None,
    encoding: str = "utf-8",
) -> None:
    (FIXTURES if target is None else target).append(
        {
            "file": name,
            "body": body,
            "raw": raw,
            "encoding": encoding,
            "service": service,
            "outcome": outcome,
            "status": status,
            "cards": cards,
            "note": note,
        }
    )


def std_prefetch(pid: str, pat: dict, conds: list[dict], coverage: dict | None) -> dict:
    p = {"patient": pat, "conditions": conditions_bundle(pid, conds)}
    if coverage is not None:
        p["coverage"] = coverage
    return p


def pain_card(policy: str, family: str, mrid: str, basis: str = "order") -> dict:
    return card("warning", policy, "chronic_pain", family, basis, f"MedicationRequest/{mrid}")


def psych_card(policy: str, family: str, mrid: str, basis: str = "order") -> dict:
    return card("warning", policy, "psychiatric", family, basis, f"MedicationRequest/{mrid}")


# ================================================================ fixtures
def build_fires_pain() -> None:
    # 01 CRPS, ketamine, reasonCode ICD-10-CM G90.511, MN coverage by display
    pid = "pt-crps-01"
    pat = patient(pid, "Lindqvist", ["Marta", "J."], "female", "1981-07-02", "MRN-300101")
    c = condition("cond-crps-01", pid, [icd("G90.511")], "CRPS type I, right arm")
    mr = med_request(
        "mr-ket-crps-01",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        dosage=iv_infusion(
            20, "mg/h", 4, "Ketamine 20 mg/h IV infusion over 4 hours (outpatient infusion day 1)"
        ),
        reason_code=[cc(icd("G90.511"), text="CRPS type I of right upper limb")],
        encounter="enc-crps-01",
    )
    add(
        "01-crps-ketamine-reasoncode.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [c], coverage_mn(pid, "MN40022871")),
            encounter="enc-crps-01",
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "IV ketamine 238084 with reasonCode ICD-10-CM G90.511 (CRPS I); payor display BCBS "
        "Minnesota.",
    )

    # 02 Fibromyalgia, lidocaine 1010033, reasonReference -> contained Condition; no coverage
    pid = "pt-fm-02"
    pat = patient(pid, "Okonkwo", ["Adaeze"], "female", "1974-11-19", "MRN-300102")
    contained_cond = condition(
        "fm",
        pid,
        [icd("M79.7"), sct("203082005")],
        "Fibromyalgia",
        category="encounter-diagnosis",
    )
    mr = med_request(
        "mr-lido-fm-02",
        pid,
        med={"medicationCodeableConcept": med_cc("lido10")},
        contained=[contained_cond],
        reason_ref=[{"reference": "#fm", "display": "Fibromyalgia"}],
        dosage=iv_weight_dose_infusion(
            350, 350, 1, "Lidocaine 5 mg/kg (350 mg) IV in 250 mL NS over 60 minutes"
        ),
    )
    add(
        "02-fibromyalgia-lidocaine-contained-condition.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            {"patient": pat, "conditions": conditions_bundle(pid, [])},
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "fibromyalgia", mr["id"])],
        "reasonReference '#fm' resolves to a contained Condition M79.7 + SNOMED 203082005. "
        "No coverage key -> default policy.",
    )

    # 03 PHN, lidocaine 1010671, reasonReference -> Condition in prefetch conditions
    pid = "pt-phn-03"
    pat = patient(pid, "Brandvold", ["Harold"], "male", "1949-02-27", "MRN-300103")
    conds = [
        condition("cond-htn-03", pid, [icd("I10")], "Essential hypertension", onset="2012-05-01"),
        condition(
            "cond-phn-03",
            pid,
            [icd("B02.29"), sct("2177002")],
            "Postherpetic neuralgia, left T6 dermatome",
            onset="2025-09-10",
            recorded="2025-12-02",
        ),
    ]
    mr = med_request(
        "mr-lido-phn-03",
        pid,
        med={"medicationCodeableConcept": med_cc("lido20")},
        reason_ref=[{"reference": "Condition/cond-phn-03", "display": "Postherpetic neuralgia"}],
        dosage=iv_weight_dose_infusion(
            300, 300, 1, "Lidocaine 300 mg IV over 60 minutes, cardiac monitoring"
        ),
    )
    add(
        "03-phn-lidocaine-prefetch-condition.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, conds, coverage_mn(pid, "MN40029113")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "postherpetic_neuralgia", mr["id"])],
        "reasonReference Condition/cond-phn-03 is found in prefetch 'conditions' (B02.29 + SNOMED "
        "2177002). The other problem (I10) is unrelated.",
    )

    # 04 Diabetic neuropathy, SNOMED + ICD-10-CM in one reasonCode
    pid = "pt-dpn-04"
    pat = patient(pid, "Villanueva", ["Ernesto", "R."], "male", "1962-04-08", "MRN-300104")
    c = condition(
        "cond-dpn-04", pid, [icd("E11.42"), sct("230572002")], "Painful diabetic polyneuropathy"
    )
    mr = med_request(
        "mr-lido-dpn-04",
        pid,
        med={"medicationCodeableConcept": med_cc("lido10")},
        reason_code=[
            cc(sct("230572002"), icd("E11.42"), text="Painful diabetic peripheral neuropathy")
        ],
        dosage=iv_weight_dose_infusion(
            400, 400, 1, "Lidocaine 5 mg/kg (400 mg) IV over 60 minutes"
        ),
    )
    add(
        "04-diabetic-neuropathy-lidocaine-snomed-icd.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [c], coverage_mn(pid, "MN40031570")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "diabetic_neuropathy", mr["id"])],
        "reasonCode carries SNOMED 230572002 first and ICD-10-CM E11.42 second.",
    )

    # 05 Chronic migraine G43.709, lidocaine infusion
    pid = "pt-cm-05"
    pat = patient(pid, "Achterberg", ["Noor"], "female", "1990-01-23", "MRN-300105")
    mr = med_request(
        "mr-lido-cm-05",
        pid,
        med={"medicationCodeableConcept": med_cc("lido10")},
        reason_code=[cc(icd("G43.709"), text="Chronic migraine without aura")],
        dosage=iv_infusion(
            60, "mg/h", 8, "Lidocaine 1 mg/min (60 mg/h) IV continuous infusion, reassess q8h"
        ),
        category="inpatient",
        encounter="enc-cm-05",
    )
    add(
        "05-chronic-migraine-lidocaine.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40035528")),
            encounter="enc-cm-05",
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "chronic_migraine", mr["id"])],
        "ICD-10-CM G43.709 (chronic migraine) on an inpatient lidocaine infusion.",
    )

    # 06 Chronic pain syndrome G89.4, ketamine 10 mg/mL
    pid = "pt-cps-06"
    pat = patient(pid, "Delacroix", ["Simone"], "female", "1968-08-30", "MRN-300106")
    mr = med_request(
        "mr-ket-cps-06",
        pid,
        med={"medicationCodeableConcept": med_cc("ket10")},
        reason_code=[cc(icd("G89.4"), text="Chronic pain syndrome")],
        dosage=iv_infusion(30, "mg/h", 4, "Ketamine 30 mg/h IV over 4 hours"),
    )
    add(
        "06-chronic-pain-syndrome-ketamine.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40040207")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "chronic_pain_general", mr["id"])],
        "ICD-10-CM G89.4 chronic pain syndrome; ketamine 10 MG/ML SCD 238082.",
    )

    # 07 medicationReference -> contained Medication (ketamine 238084); neuropathic pain M79.2
    pid = "pt-np-07"
    pat = patient(pid, "Haugen", ["Torstein"], "male", "1958-12-12", "MRN-300107")
    mr = med_request(
        "mr-ket-np-07",
        pid,
        med={"medicationReference": {"reference": "#med1", "display": "Ketamine 50 mg/mL"}},
        contained=[medication_resource("med1", "ket50")],
        reason_code=[cc(icd("M79.2"), text="Neuralgia, unspecified")],
        dosage=iv_infusion(25, "mg/h", 4, "Ketamine 25 mg/h IV over 4 hours"),
    )
    add(
        "07-neuropathic-ketamine-contained-medication.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40041876")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "neuropathic_pain", mr["id"])],
        "Drug identified only through medicationReference '#med1' -> contained Medication "
        "(RxNorm 238084 + NDC); reason M79.2.",
    )

    # 08 medicationReference -> Medication placed as another entry in draftOrders (Ketalar)
    pid = "pt-pl-08"
    pat = patient(pid, "Castellanos", ["Rafael"], "male", "1977-03-05", "MRN-300108")
    med = medication_resource("med-ketalar-50-08", "ketalar50")
    mr = med_request(
        "mr-ket-pl-08",
        pid,
        med={"medicationReference": {"reference": "Medication/med-ketalar-50-08"}},
        reason_code=[cc(icd("G54.6"), text="Phantom limb pain, left below-knee amputation")],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine (Ketalar) 20 mg/h IV over 4 hours"),
    )
    add(
        "08-phantom-limb-ketamine-medication-in-draftorders.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr), entry(med)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40047719")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "phantom_limb", mr["id"])],
        "medicationReference Medication/med-ketalar-50-08 resolves to a second draftOrders entry "
        "(Ketalar SBD 206972 + NDC 42023-114-10). Only the MedicationRequest yields a card.",
    )

    # 09 Kansas coverage (payor reference + included Organization); central pain G89.0
    pid = "pt-cp-09"
    pat = patient(pid, "Pruitt", ["Leanne"], "female", "1955-06-17", "MRN-300109")
    mr = med_request(
        "mr-ket-cp-09",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("G89.0"), text="Central post-stroke pain")],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    add(
        "09-central-pain-ketamine-kansas.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_ks(pid, "KS77100342")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_KS, "central_pain_post_stroke", mr["id"])],
        "Coverage.payor references Organization/org-bcbsks, included in the coverage bundle "
        "(search.mode include) -> Kansas policy.",
    )

    # 10 SNOMED-only reason 128200000 CRPS
    pid = "pt-crps-10"
    pat = patient(pid, "Marchetti", ["Giulia"], "female", "1986-10-04", "MRN-300110")
    mr = med_request(
        "mr-ket-crps-10",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(sct("128200000"), text="Complex regional pain syndrome")],
        dosage=iv_infusion(
            15, "mg/h", 96, "Ketamine 15 mg/h IV continuous infusion for 4 days (inpatient)"
        ),
        category="inpatient",
        encounter="enc-crps-10",
    )
    add(
        "10-crps-ketamine-snomed-only.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40052260")),
            encounter="enc-crps-10",
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "Reason coded only in SNOMED CT (128200000), no ICD-10-CM coding.",
    )

    # 11 No route, but an infusion rate -> IV
    pid = "pt-cp-11"
    pat = patient(pid, "Nakamura", ["Kenji"], "male", "1971-09-21", "MRN-300111")
    mr = med_request(
        "mr-ket-norate-11",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("G89.29"), text="Other chronic pain")],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h infusion over 4 hours", route=False),
    )
    add(
        "11-chronic-pain-ketamine-no-route-rate.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40058834")),
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "chronic_pain_general", mr["id"])],
        "dosageInstruction has no route, but doseAndRate.rateQuantity (mg/h) and "
        "timing.repeat.duration -> treated as IV infusion.",
    )

    # 12 Premixed lidocaine bag 1737742 with HCPCS J2002 beside RxNorm; chronic daily headache
    pid = "pt-cdh-12"
    pat = patient(pid, "Oyelaran", ["Funmilayo"], "female", "1983-05-29", "MRN-300112")
    mr = med_request(
        "mr-lido-bag-12",
        pid,
        med={
            "medicationCodeableConcept": med_cc(
                "lido_bag250", coding(HCPCS, "J2002", "Inj, lidocaine in d5w, 1 mg")
            )
        },
        reason_code=[cc(icd("G44.229"), text="Chronic tension-type headache, refractory")],
        dosage=iv_infusion(
            60, "mg/h", 24, "Lidocaine 4 mg/mL in D5W at 1 mg/min (60 mg/h) IV x 24 hours"
        ),
        category="inpatient",
        encounter="enc-cdh-12",
    )
    add(
        "12-chronic-headache-premixed-lidocaine-hcpcs.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40060115")),
            encounter="enc-cdh-12",
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "chronic_daily_headache", mr["id"])],
        "Premixed bag RxNorm 1737742 + NDC + HCPCS J2002 codings; pain indication G44.229 (a "
        "chronic daily headache type), so the antiarrhythmic premix still fires.",
    )

    # 34 two target orders in one session, both fire
    pid = "pt-two-34"
    pat = patient(pid, "Sorensen", ["Bjorn", "A."], "male", "1966-02-14", "MRN-300134")
    mr1 = med_request(
        "mr-ket-crps-34",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("G90.522"), text="CRPS I, left leg")],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    mr2 = med_request(
        "mr-lido-fm-34",
        pid,
        med={"medicationCodeableConcept": med_cc("lido10")},
        reason_code=[cc(icd("M79.7"), sct("203082005"), text="Fibromyalgia")],
        dosage=iv_weight_dose_infusion(400, 400, 1, "Lidocaine 400 mg IV over 60 minutes"),
    )
    add(
        "34-two-orders-both-fire.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr1), entry(mr2)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40066120")),
        ),
        SIGN,
        "fires-pain",
        [
            pain_card(POLICY_MN, "crps", mr1["id"]),
            pain_card(POLICY_MN, "fibromyalgia", mr2["id"]),
        ],
        "Two draft IV orders (ketamine for G90.522, lidocaine for M79.7) -> one card per order, "
        "in draftOrders order.",
    )


def etodolac_order(mrid: str, pid: str) -> dict:
    return med_request(
        mrid,
        pid,
        med={"medicationCodeableConcept": med_cc("etodolac")},
        dosage=[
            {
                "sequence": 1,
                "text": "Etodolac 500 mg by mouth twice daily",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "route": cc(ROUTE["oral"]),
                "doseAndRate": [{"doseQuantity": qty(1, "tablet", "{tbl}")}],
            }
        ],
        category="community",
    )


def build_fires_psych() -> None:
    # 13 F33.2 recurrent severe MDD
    pid = "pt-mdd-13"
    pat = patient(pid, "Ferreira", ["Lucas"], "male", "1988-04-11", "MRN-300113")
    c = condition(
        "cond-mdd-13",
        pid,
        [icd("F33.2"), sct("370143000")],
        "MDD, recurrent, severe",
        onset="2019-02-01",
    )
    mr = med_request(
        "mr-ket-mdd-13",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[
            cc(
                icd("F33.2"),
                sct("370143000"),
                text="Treatment-resistant depression (failed sertraline, bupropion)",
            )
        ],
        dosage=ketamine_depression_course("iv", 40),
    )
    add(
        "13-depression-ketamine-f33.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [c], coverage_mn(pid, "MN40070044")),
        ),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", mr["id"])],
        "Ketamine 0.5 mg/kg IV over 40 min, twice weekly; reasonCode F33.2 + SNOMED 370143000.",
    )

    # 14 PTSD F43.12, with an unrelated second order
    pid = "pt-ptsd-14"
    pat = patient(pid, "Redcloud", ["Tanner"], "male", "1984-08-08", "MRN-300114")
    mr = med_request(
        "mr-ket-ptsd-14",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F43.12"), sct("47505003"), text="Chronic PTSD")],
        dosage=ketamine_depression_course("iv", 40),
    )
    other = etodolac_order("mr-etod-14", pid)
    add(
        "14-ptsd-ketamine.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(other), entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40071920")),
        ),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "ptsd", mr["id"])],
        "PTSD F43.12; the first draft order (oral etodolac 199390) is not a target and gets no "
        "card.",
    )

    # 15 OCD F42.2 under Kansas coverage
    pid = "pt-ocd-15"
    pat = patient(pid, "Whitcomb", ["Abigail"], "female", "1995-12-01", "MRN-300115")
    mr = med_request(
        "mr-ket-ocd-15",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F42.2"), sct("191736004"), text="Obsessive-compulsive disorder")],
        dosage=ketamine_depression_course("iv", 30),
    )
    add(
        "15-ocd-ketamine-kansas.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_ks(pid, "KS77100977")),
        ),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_KS, "ocd", mr["id"])],
        "OCD F42.2; payor is a reference to the included Organization 'Blue Cross and Blue "
        "Shield of Kansas'.",
    )

    # 16 Bipolar F31.81 via reasonReference to a Condition entry in draftOrders (urn:uuid)
    pid = "pt-bp-16"
    pat = patient(pid, "Abernathy", ["Colette"], "female", "1979-03-26", "MRN-300116")
    cond_uuid = "urn:uuid:" + new_uuid()
    cond = condition(
        None,
        pid,
        [icd("F31.81"), sct("13746004")],
        "Bipolar II disorder, current episode depressed",
        category="encounter-diagnosis",
        onset="2016-07-01",
        recorded="2026-05-21",
    )
    mr = med_request(
        "mr-ket-bp-16",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_ref=[{"reference": cond_uuid, "display": "Bipolar II disorder"}],
        dosage=ketamine_depression_course("iv", 35),
    )
    add(
        "16-bipolar-ketamine-condition-in-draftorders.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr), entry(cond, full_url=cond_uuid)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40079911")),
        ),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "bipolar", mr["id"])],
        "reasonReference is a urn:uuid that matches the fullUrl of a Condition entry (no id) in "
        "draftOrders (F31.81 + SNOMED 13746004).",
    )


def build_order_select() -> None:
    # 17 selections pick the IV ketamine order (depression) out of two
    pid = "pt-sel-17"
    pat = patient(pid, "Guerrero", ["Paloma"], "female", "1992-09-09", "MRN-300117")
    ket = med_request(
        "mr-ket-sel-17",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F32.2"), text="Major depressive disorder, single episode, severe")],
        dosage=ketamine_depression_course("iv", 35),
    )
    patch = med_request(
        "mr-patch-sel-17",
        pid,
        med={"medicationCodeableConcept": med_cc("lido_patch")},
        dosage=[
            {
                "sequence": 1,
                "text": "Apply 1 patch to painful area for up to 12 hours in 24 hours",
                "route": cc(ROUTE["topical"]),
                "doseAndRate": [{"doseQuantity": qty(1, "patch", "{patch}")}],
            }
        ],
        category="community",
    )
    add(
        "17-order-select-selected-ketamine-depression.json",
        hook_request(
            "order-select",
            pid,
            draft_bundle(entry(patch), entry(ket)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40080012")),
            selections=[f"MedicationRequest/{ket['id']}"],
        ),
        SELECT,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", ket["id"])],
        "Two draft orders; selections = the IV ketamine order (F32.2). The lidocaine patch is "
        "neither selected nor a target.",
    )

    # 18 only a NON-selected order is IV ketamine -> quiet
    pid = "pt-sel-18"
    pat = patient(pid, "Lindgren", ["Oskar"], "male", "1969-01-30", "MRN-300118")
    ket = med_request(
        "mr-ket-unsel-18",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F33.2"), text="MDD, recurrent, severe")],
        dosage=ketamine_depression_course("iv", 40),
    )
    etod = etodolac_order("mr-etod-sel-18", pid)
    add(
        "18-order-select-unselected-ketamine-quiet.json",
        hook_request(
            "order-select",
            pid,
            draft_bundle(entry(ket), entry(etod)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40081550")),
            selections=[f"MedicationRequest/{etod['id']}"],
        ),
        SELECT,
        "quiet",
        [],
        "The IV ketamine order for F33.2 is in draftOrders but not in selections (only etodolac "
        "is selected); order-select evaluates selections only.",
    )


def build_quiet() -> None:
    # 19 lidocaine IV for ventricular tachycardia
    pid = "pt-vt-19"
    pat = patient(pid, "Kowalczyk", ["Stanislaw"], "male", "1951-11-03", "MRN-300119")
    mr = med_request(
        "mr-lido-vt-19",
        pid,
        med={"medicationCodeableConcept": med_cc("lido_bag500")},
        reason_code=[cc(icd("I47.20"), sct("25569003"), text="Ventricular tachycardia")],
        dosage=iv_infusion(
            2, "mg/min", 24, "Lidocaine 4 mg/mL premix at 2 mg/min IV after 100 mg bolus"
        ),
        category="inpatient",
        encounter="enc-ccu-19",
    )
    add(
        "19-lidocaine-iv-ventricular-tachycardia.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090001")),
            encounter="enc-ccu-19",
        ),
        SIGN,
        "quiet",
        [],
        "FDA-labeled antiarrhythmic use (I47.20 + SNOMED 25569003) is not experimental.",
    )

    # 20 ketamine IV, reasonReference -> contained Procedure (general anesthesia)
    pid = "pt-anes-20"
    pat = patient(pid, "Beaulieu", ["Celine"], "female", "1998-06-14", "MRN-300120")
    proc = {
        "resourceType": "Procedure",
        "id": "proc1",
        "status": "preparation",
        "code": cc(sct("50697003"), text="General anesthesia"),
        "subject": {"reference": f"Patient/{pid}"},
    }
    mr = med_request(
        "mr-ket-anes-20",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        contained=[proc],
        reason_ref=[{"reference": "#proc1", "display": "General anesthesia"}],
        dosage=single_dose("iv", 120, "mg", "Ketamine 2 mg/kg (120 mg) IV push for induction"),
        category="inpatient",
        encounter="enc-or-20",
    )
    add(
        "20-ketamine-anesthesia-contained-procedure.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090020")),
            encounter="enc-or-20",
        ),
        SIGN,
        "quiet",
        [],
        "reasonReference -> contained Procedure SNOMED 50697003 General anesthesia: approved use.",
    )

    # 21 ketamine IV, reasonCode SNOMED 50697003
    pid = "pt-anes-21"
    pat = patient(pid, "Ibrahim", ["Yusuf"], "male", "1987-02-02", "MRN-300121")
    mr = med_request(
        "mr-ket-anes-21",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(sct("50697003"), text="General anesthesia")],
        dosage=single_dose("iv", 150, "mg", "Ketamine 2 mg/kg (150 mg) IV push"),
        category="inpatient",
        encounter="enc-or-21",
    )
    add(
        "21-ketamine-anesthesia-reasoncode.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090021")),
            encounter="enc-or-21",
        ),
        SIGN,
        "quiet",
        [],
        "reasonCode SNOMED 50697003 General anesthesia (procedure): approved use.",
    )

    # 22 ketamine IM for depression
    pid = "pt-im-22"
    pat = patient(pid, "Valdez", ["Marisol"], "female", "1976-10-17", "MRN-300122")
    mr = med_request(
        "mr-ket-im-22",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F33.2"), text="MDD, recurrent, severe")],
        dosage=ketamine_depression_course("im", 35),
    )
    add(
        "22-ketamine-im-depression.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090022")),
        ),
        SIGN,
        "quiet",
        [],
        "Same injectable SCD 238084 but route Intramuscular 78421000: not an IV order.",
    )

    # 23 lidocaine patch, topical, PHN
    pid = "pt-patch-23"
    pat = patient(pid, "Thorne", ["Evelyn"], "female", "1945-04-04", "MRN-300123")
    mr = med_request(
        "mr-patch-23",
        pid,
        med={"medicationCodeableConcept": med_cc("lido_patch")},
        reason_code=[cc(icd("B02.29"), sct("2177002"), text="Postherpetic neuralgia")],
        dosage=[
            {
                "sequence": 1,
                "text": "Apply up to 3 patches to painful area, 12 hours on / 12 hours off",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": cc(ROUTE["topical"]),
                "doseAndRate": [{"doseQuantity": qty(1, "patch", "{patch}")}],
            }
        ],
        category="community",
    )
    add(
        "23-lidocaine-patch-topical.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090023")),
        ),
        SIGN,
        "quiet",
        [],
        "Lidocaine 5% patch 1745091, topical route, for PHN: not an IV product.",
    )

    # 24 esketamine nasal spray
    pid = "pt-esk-24"
    pat = patient(pid, "Albescu", ["Radu"], "male", "1980-07-07", "MRN-300124")
    mr = med_request(
        "mr-esk-24",
        pid,
        med={"medicationCodeableConcept": med_cc("esketamine")},
        reason_code=[cc(icd("F33.2"), text="Treatment-resistant depression")],
        dosage=[
            {
                "sequence": 1,
                "text": "Esketamine 56 mg intranasally twice weekly (in-clinic, REMS)",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}},
                "route": cc(ROUTE["nasal"]),
                "doseAndRate": [{"doseQuantity": qty(56, "mg")}],
            }
        ],
    )
    add(
        "24-esketamine-nasal-spray.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090024")),
        ),
        SIGN,
        "quiet",
        [],
        "Esketamine 2119381 (ingredient 2119365, not ketamine 6130), nasal route.",
    )

    # 25 lidocaine with epinephrine, local infiltration (subcutaneous), problem list FM
    pid = "pt-epi-25"
    pat = patient(pid, "Mbeki", ["Thandiwe"], "female", "1973-03-13", "MRN-300125")
    c = condition("cond-fm-25", pid, [icd("M79.7")], "Fibromyalgia")
    mr = med_request(
        "mr-lidoepi-25",
        pid,
        med={"medicationCodeableConcept": med_cc("lido_epi")},
        dosage=single_dose(
            "sc", 5, "mL", "Lidocaine 1% with epinephrine 1:100,000, 5 mL local infiltration"
        ),
    )
    add(
        "25-lidocaine-epinephrine-infiltration.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [c], coverage_mn(pid, "MN40090025")),
        ),
        SIGN,
        "quiet",
        [],
        "Epinephrine/lidocaine combination 1010751 (excluded product), subcutaneous route, no "
        "reason; the problem list has M79.7 but the product is not a target, so no "
        "missing-indication card either.",
    )

    # 26 sandbox-shaped etodolac order (exact quirks of the CDS Hooks sandbox Rx Sign screen)
    pid = "pt-sbx-26"
    pat = patient(pid, "Rivera", ["Daniel"], "male", "1970-05-05", "MRN-300126")
    sandbox_mr = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-05-21",
        "medicationCodeableConcept": {
            "text": "Etodolac 500 MG Oral Tablet",
            "coding": [coding(RXNORM, "199390", "Etodolac 500 MG Oral Tablet")],
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "system": UCUM, "code": "{pill}"}}],
            }
        ],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": 1,
            "quantity": {"value": 1, "system": UCUM, "code": "{pill}"},
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": UCUM,
                "code": "d",
            },
        },
        # The sandbox sends category as a single object, not an array (not valid R4).
        "category": {"coding": [coding(MR_CAT, "community", "Community")]},
    }
    req = hook_request(
        "order-sign",
        pid,
        # The sandbox sends draftOrders without Bundle.type (not valid R4).
        {"resourceType": "Bundle", "entry": [{"resource": sandbox_mr}]},
        {"patient": pat, "conditions": conditions_bundle(pid, [])},
    )
    req["context"]["userId"] = "Practitioner/COREPRACTITIONER1"
    add(
        "26-etodolac-oral-sandbox-shape.json",
        req,
        SIGN,
        "quiet",
        [],
        "Non-target oral drug in the exact shape the CDS Hooks sandbox sends (no route, category "
        "as an object, Bundle without type). Must not be a 400.",
    )

    # 27 cancer pain G89.3
    pid = "pt-onc-27"
    pat = patient(pid, "Gallagher", ["Moira"], "female", "1958-01-19", "MRN-300127")
    mr = med_request(
        "mr-ket-onc-27",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("G89.3"), text="Neoplasm related pain, metastatic pancreatic cancer")],
        dosage=iv_infusion(
            10, "mg/h", 72, "Ketamine 10 mg/h IV continuous infusion, palliative care"
        ),
        category="inpatient",
        encounter="enc-pall-27",
    )
    add(
        "27-ketamine-cancer-pain.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090027")),
            encounter="enc-pall-27",
        ),
        SIGN,
        "quiet",
        [],
        "G89.3 neoplasm-related pain: terminal cancer pain is outside the policy.",
    )

    # 28 ServiceRequest-only bundle
    pid = "pt-sr-28"
    pat = patient(pid, "Osei", ["Kwame"], "male", "1965-08-25", "MRN-300128")
    sr = {
        "resourceType": "ServiceRequest",
        "id": "sr-anes-28",
        "status": "draft",
        "intent": "original-order",
        "code": cc(sct("50697003"), text="General anesthesia"),
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-05-21T09:14:00-05:00",
        "requester": {"reference": "Practitioner/prac-4471", "display": "Dr. Imani Okafor"},
    }
    add(
        "28-servicerequest-only.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(sr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090028")),
        ),
        SIGN,
        "quiet",
        [],
        "draftOrders holds only a ServiceRequest; no MedicationRequest to evaluate.",
    )

    # 29 empty draftOrders bundle
    pid = "pt-empty-29"
    pat = patient(pid, "Yilmaz", ["Elif"], "female", "1993-02-28", "MRN-300129")
    add(
        "29-empty-draftorders.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090029")),
        ),
        SIGN,
        "quiet",
        [],
        "draftOrders is a collection Bundle with no entry.",
    )

    # 30 DSTU2 MedicationOrder
    pid = "pt-dstu2-30"
    pat = patient(pid, "Hollis", ["Graham"], "male", "1960-12-24", "MRN-300130")
    mo = {
        "resourceType": "MedicationOrder",
        "id": "mo-ket-30",
        "dateWritten": "2026-05-21",
        "status": "draft",
        "patient": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": med_cc("ket50"),
        "reasonCodeableConcept": cc(icd("F33.2"), text="MDD, recurrent, severe"),
        "dosageInstruction": [
            {
                "text": "Ketamine 40 mg IV over 40 minutes",
                "route": cc(ROUTE["iv"]),
                "doseQuantity": qty(40, "mg"),
            }
        ],
    }
    add(
        "30-dstu2-medicationorder.json",
        hook_request(
            "order-sign",
            pid,
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": mo}]},
            {"patient": pat},
        ),
        SIGN,
        "quiet",
        [],
        "DSTU2-style MedicationOrder (what the sandbox builds against a DSTU2 server). The "
        "service is R4-only and ignores it (quiet, not an error).",
    )


def build_missing_indication() -> None:
    # 31 no reason; problem list has F32.2
    pid = "pt-pl-31"
    pat = patient(pid, "Petrosyan", ["Anahit"], "female", "1985-09-15", "MRN-300131")
    conds = [
        condition("cond-htn-31", pid, [icd("I10")], "Essential hypertension", onset="2018-01-10"),
        condition(
            "cond-mdd-31",
            pid,
            [icd("F32.2")],
            "Major depressive disorder, single episode, severe",
            onset="2025-11-02",
        ),
    ]
    mr = med_request(
        "mr-ket-noreason-31",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        dosage=ketamine_depression_course("iv", 35),
    )
    add(
        "31-no-reason-problem-list-depression.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, conds, coverage_mn(pid, "MN40090031")),
        ),
        SIGN,
        "missing-indication",
        [psych_card(POLICY_MN, "depression", mr["id"], basis="problem-list")],
        "IV ketamine with no reasonCode/reasonReference; the active problem list has F32.2 -> "
        "warning based on the problem list.",
    )

    # 32 no reason; empty problem list
    pid = "pt-pl-32"
    pat = patient(pid, "Eriksen", ["Sigrid"], "female", "1978-07-19", "MRN-300132")
    mr = med_request(
        "mr-lido-noreason-32",
        pid,
        med={"medicationCodeableConcept": med_cc("lido10")},
        dosage=iv_weight_dose_infusion(300, 300, 1, "Lidocaine 300 mg IV over 60 minutes"),
    )
    add(
        "32-no-reason-problem-list-empty.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090032")),
        ),
        SIGN,
        "missing-indication",
        [card("info", POLICY_MN, None, None, "undocumented", f"MedicationRequest/{mr['id']}")],
        "IV lidocaine, no reason, empty active problem list -> info card asking to document the "
        "indication.",
    )

    # 33 no reason; problem list unrelated (I10), Kansas coverage
    pid = "pt-pl-33"
    pat = patient(pid, "Tran", ["Minh", "Q."], "male", "1957-03-03", "MRN-300133")
    conds = [
        condition("cond-htn-33", pid, [icd("I10")], "Essential hypertension", onset="2010-06-01")
    ]
    mr = med_request(
        "mr-ket-noreason-33",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    add(
        "33-no-reason-problem-list-unrelated.json",
        hook_request(
            "order-sign",
            pid,
            draft_bundle(entry(mr)),
            std_prefetch(pid, pat, conds, coverage_ks(pid, "KS77101210")),
        ),
        SIGN,
        "missing-indication",
        [card("info", POLICY_KS, None, None, "undocumented", f"MedicationRequest/{mr['id']}")],
        "IV ketamine, no reason, problem list only I10 (unrelated); Kansas coverage -> info card "
        "under the Kansas policy.",
    )


def valid_base_request(pid: str, mrid: str) -> dict:
    pat = patient(pid, "Kimura", ["Aiko"], "female", "1989-10-10", "MRN-300140")
    mr = med_request(
        mrid,
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F33.2"), text="MDD, recurrent, severe")],
        dosage=ketamine_depression_course("iv", 35),
    )
    return hook_request(
        "order-sign",
        pid,
        draft_bundle(entry(mr)),
        {"patient": pat, "conditions": conditions_bundle(pid, [])},
    )


def build_bad_input() -> None:
    raw = (
        "hook=order-sign&hookInstance=3f1c2a9e-6d1b-4b7a-9a43-0c5e7d2b8f11"
        "&context.patientId=pt-bad-35&context.userId=Practitioner/prac-4471\n"
    )
    add(
        "35-bad-not-json.txt",
        None,
        SIGN,
        "bad-input",
        [],
        "Form-encoded text, not JSON (send with Content-Type: application/json).",
        status=400,
        raw=raw,
    )

    add(
        "36-bad-json-array.json",
        [valid_base_request("pt-bad-36", "mr-ket-bad-36")],
        SIGN,
        "bad-input",
        [],
        "Body is a JSON array wrapping an otherwise valid request.",
        status=400,
    )

    body = valid_base_request("pt-bad-37", "mr-ket-bad-37")
    del body["hookInstance"]
    add(
        "37-bad-missing-hookinstance.json",
        body,
        SIGN,
        "bad-input",
        [],
        "Required hookInstance is missing.",
        status=400,
    )

    body = valid_base_request("pt-bad-38", "mr-ket-bad-38")
    del body["context"]["draftOrders"]
    add(
        "38-bad-missing-draftorders.json",
        body,
        SIGN,
        "bad-input",
        [],
        "context.draftOrders (required for order-sign) is missing.",
        status=400,
    )

    body = valid_base_request("pt-bad-39", "mr-ket-bad-39")
    body["context"]["draftOrders"] = json.dumps(body["context"]["draftOrders"])
    add(
        "39-bad-draftorders-string.json",
        body,
        SIGN,
        "bad-input",
        [],
        "context.draftOrders is a string (a double-encoded Bundle), not a Bundle object.",
        status=400,
    )

    body = valid_base_request("pt-bad-40", "mr-ket-bad-40")
    body["hook"] = "order-select"
    add(
        "40-bad-order-select-missing-selections.json",
        body,
        SELECT,
        "bad-input",
        [],
        "order-select request without context.selections (required for order-select).",
        status=400,
    )

    body = valid_base_request("pt-bad-41", "mr-ket-bad-41")
    body["hook"] = "order-select"
    ctx = body["context"]
    body["context"] = {
        "userId": ctx["userId"],
        "patientId": ctx["patientId"],
        "selections": ["MedicationRequest/mr-ket-bad-41"],
        "draftOrders": ctx["draftOrders"],
    }
    add(
        "41-bad-hook-mismatch-order-select-to-sign.json",
        body,
        SIGN,
        "bad-input",
        [],
        "A well-formed order-select body POSTed to the order-sign service: hook mismatch.",
        status=400,
    )


# ================================================================ FHIR server seed + fixtures
SEED_PATIENTS = {
    "seed-pat-1": patient(
        "seed-pat-1", "Halvorsen", ["Ingrid", "M."], "female", "1976-02-09", "MRN-900001"
    ),
    "seed-pat-2": patient("seed-pat-2", "Mwangi", ["Jabari"], "male", "1983-06-22", "MRN-900002"),
    "seed-pat-3": patient(
        "seed-pat-3", "Dubois", ["Theodore", "P."], "male", "1954-09-30", "MRN-900003"
    ),
}


def seed_resources() -> list[dict]:
    res: list[dict] = list(SEED_PATIENTS.values())
    # Patient 1: active CRPS + hypertension, inactive (resolved) MDD
    res += [
        condition(
            "seed-cond-1-crps",
            "seed-pat-1",
            [icd("G90.511"), sct("128200000")],
            "CRPS type I, right arm",
            onset="2024-10-01",
            recorded="2024-11-15",
        ),
        condition(
            "seed-cond-1-htn",
            "seed-pat-1",
            [icd("I10")],
            "Essential hypertension",
            onset="2015-03-01",
        ),
        condition(
            "seed-cond-1-mdd-inactive",
            "seed-pat-1",
            [icd("F33.2")],
            "MDD, recurrent, severe (resolved)",
            status="inactive",
            onset="2019-01-15",
            recorded="2019-01-15",
        ),
    ]
    # Patient 2: PTSD, Kansas coverage
    res.append(
        condition(
            "seed-cond-2-ptsd",
            "seed-pat-2",
            [icd("F43.12"), sct("47505003")],
            "Chronic PTSD",
            onset="2021-05-05",
        )
    )
    # Patient 3: 14 active conditions; only the LAST one (F33.2) is a policy family, so a
    # service that reads only the first page of a paged search misses it.
    unrelated = [
        "I10",
        "I49.3",
        "I47.29",
        "I47.0",
        "I47.21",
        "I49.01",
        "I49.02",
        "I46.2",
        "G89.11",
        "G89.12",
        "G89.18",
        "R52",
        "I47.20",
    ]
    for n, code in enumerate(unrelated, start=1):
        res.append(
            condition(
                f"seed-cond-3-{n:02d}",
                "seed-pat-3",
                [icd(code)],
                ICD[code],
                onset=f"2023-{(n % 12) + 1:02d}-10",
                recorded=f"2023-{(n % 12) + 1:02d}-10",
            )
        )
    res.append(
        condition(
            "seed-cond-3-14-mdd",
            "seed-pat-3",
            [icd("F33.2"), sct("370143000")],
            "MDD, recurrent, severe",
            onset="2025-08-20",
            recorded="2025-08-20",
        )
    )
    res.append(medication_resource("seed-med-ketamine-50", "ket50"))
    res.append(kansas_org("seed-org-bcbsks"))
    res.append(
        coverage_resource(
            "seed-pat-2",
            "seed-cov-2",
            {
                "reference": "Organization/seed-org-bcbsks",
                "display": "Blue Cross and Blue Shield of Kansas",
            },
            "KS77200456",
        )
    )
    return res


def seed_bundle() -> dict:
    return {
        "resourceType": "Bundle",
        "id": "iv-anesthetics-seed",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in seed_resources()
        ],
    }


def build_fhir_fixtures() -> None:
    base = "{{FHIR_BASE}}"
    t = FHIR_FIXTURES

    mr = med_request(
        "mr-srv-crps-01",
        "seed-pat-1",
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_ref=[{"reference": "Condition/seed-cond-1-crps"}],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    add(
        "01-server-condition-crps.json",
        hook_request(
            "order-sign", "seed-pat-1", draft_bundle(entry(mr, "")), None, fhir_server=base
        ),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "No prefetch. reasonReference Condition/seed-cond-1-crps must be read from fhirServer. "
        "seed-pat-1 has no Coverage -> default policy.",
        target=t,
    )

    mr = med_request(
        "mr-srv-ptsd-02",
        "seed-pat-2",
        med={"medicationReference": {"reference": "Medication/seed-med-ketamine-50"}},
        reason_ref=[{"reference": "Condition/seed-cond-2-ptsd"}],
        dosage=ketamine_depression_course("iv", 40),
    )
    add(
        "02-server-medication-ptsd-kansas.json",
        hook_request(
            "order-sign", "seed-pat-2", draft_bundle(entry(mr, "")), None, fhir_server=base
        ),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_KS, "ptsd", mr["id"])],
        "No prefetch. Medication/seed-med-ketamine-50 and Condition/seed-cond-2-ptsd are read "
        "from the server; Coverage search finds seed-cov-2 whose payor is "
        "Organization/seed-org-bcbsks -> Kansas policy.",
        target=t,
    )

    mr = med_request(
        "mr-srv-paged-03",
        "seed-pat-3",
        med={"medicationCodeableConcept": med_cc("ket50")},
        dosage=ketamine_depression_course("iv", 40),
    )
    add(
        "03-server-paged-problem-list.json",
        hook_request(
            "order-sign", "seed-pat-3", draft_bundle(entry(mr, "")), None, fhir_server=base
        ),
        SIGN,
        "missing-indication",
        [psych_card(POLICY_MN, "depression", mr["id"], basis="problem-list")],
        "No reason, no prefetch. seed-pat-3 has 14 active Conditions; only the last one "
        "(seed-cond-3-14-mdd, F33.2) is in a policy family. Needs the Condition search to be "
        "followed across pages when the server pages (e.g. _count<14).",
        target=t,
    )

    mr = med_request(
        "mr-srv-inactive-04",
        "seed-pat-1",
        med={"medicationCodeableConcept": med_cc("ket50")},
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    add(
        "04-server-problem-list-ignores-inactive.json",
        hook_request(
            "order-sign", "seed-pat-1", draft_bundle(entry(mr, "")), None, fhir_server=base
        ),
        SIGN,
        "missing-indication",
        [pain_card(POLICY_MN, "crps", mr["id"], basis="problem-list")],
        "No reason, no prefetch. Active problems of seed-pat-1: CRPS (G90.511) and I10. The "
        "inactive F33.2 Condition must not be used (no depression card).",
        target=t,
    )



# ---------------------------------------------------------------- real clients (issue 8 §1-3, §9)
OID_RXNORM = "urn:oid:2.16.840.1.113883.6.88"
OID_SNOMED = "urn:oid:2.16.840.1.113883.6.96"
OID_ICD10CM = "urn:oid:2.16.840.1.113883.6.90"
OID_NDC = "urn:oid:2.16.840.1.113883.6.69"
# Epic's medication-route code system is per customer: urn:oid:1.2.840.114350.1.13.<customer
# ids>.7.4.798268.7025 (shape seen in public Epic FHIR samples). The local code means nothing
# here; the route is recognised from its display/text.
EPIC_ROUTE_OIDS = (
    "urn:oid:1.2.840.114350.1.13.0.1.7.4.798268.7025",
    "urn:oid:1.2.840.114350.1.13.861.1.7.4.798268.7025",
)


def epic_iv_route(oid: str) -> dict:
    return {"coding": [coding(oid, "11", "Intravenous")], "text": "Intravenous"}


def sandbox_dosage(route: dict) -> list:
    """The sandbox's generated dosage (timing + doseAndRate), with an IV route substituted."""
    return [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "route": route,
            "doseAndRate": [{"doseQuantity": {"value": 1, "system": UCUM, "code": "mL"}}],
        }
    ]


def sandbox_order(pid: str, *, reason: dict | None) -> dict:
    """The CDS Hooks sandbox's MedicationRequest (shared/reference/cds-hooks.md §3.3) with an
    IV ketamine product and an IV route substituted: category (and, on order-select, reasonCode)
    as single objects, no Bundle.type around it, id request-123."""
    rxcui, name, _ndc = MEDS["ket50"]
    mr: dict = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-11-21",
        "medicationCodeableConcept": {"text": name, "coding": [coding(RXNORM, rxcui, name)]},
        "dosageInstruction": sandbox_dosage(cc(ROUTE["iv"])),
        "dispenseRequest": {
            "numberOfRepeatsAllowed": 0,
            "quantity": {"value": 1, "system": UCUM, "code": "mL"},
            "expectedSupplyDuration": {"value": 1, "unit": "days", "system": UCUM, "code": "d"},
        },
        "category": {"coding": [coding(MR_CAT, "community", "Community")]},
    }
    if reason is not None:
        mr["reasonCode"] = reason  # one object, copied from the chosen "Treating" Condition
    return mr


def outcome_only_searchset(url: str) -> dict:
    """A "no results" search as Epic returns it: a searchset holding one OperationOutcome."""
    b = searchset(url, [])
    b["entry"] = [
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "warning",
                        "code": "informational",
                        "details": {"text": "No results were found."},
                    }
                ],
            },
            "search": {"mode": "outcome"},
        }
    ]
    return b


def build_real_clients() -> None:
    # 42 sandbox Rx View (order-select): category and reasonCode as single objects
    pid = "p1"
    pat = patient(pid, "Sandbox", ["Pat"], "female", "1980-01-01", "MRN-300142")
    mdd = condition("cond-mdd-42", pid, [sct("370143000")], "Major depressive disorder")
    mr = sandbox_order(pid, reason=cc(sct("370143000")))
    req = hook_request(
        "order-select",
        pid,
        {"resourceType": "Bundle", "entry": [{"resource": mr}]},
        {
            "patient": pat,
            "conditions": conditions_bundle(pid, [mdd]),
            "medreqs": searchset(f"MedicationRequest?patient={pid}", []),
        },
        selections=["MedicationRequest/request-123"],
    )
    req["context"]["userId"] = "Practitioner/COREPRACTITIONER1"
    add(
        "42-sandbox-order-select-ketamine-single-objects.json",
        req,
        SELECT,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", "request-123")],
        "The CDS Hooks sandbox's Rx View request (cds-hooks.md §3.3) with IV ketamine 238084 and "
        "an IV route substituted: category and reasonCode (SNOMED 370143000) are single objects, "
        "draftOrders has no Bundle.type. Decided exactly as the well-formed order.",
    )

    # 43 sandbox Rx Sign (order-sign): no reason, category as one object; problem list decides
    pid = "p1"
    mr = sandbox_order(pid, reason=None)
    req = hook_request(
        "order-sign",
        pid,
        {"resourceType": "Bundle", "entry": [{"resource": mr}]},
        {"patient": pat, "conditions": conditions_bundle(pid, [mdd])},
    )
    req["context"]["userId"] = "Practitioner/COREPRACTITIONER1"
    add(
        "43-sandbox-order-sign-ketamine-single-objects.json",
        req,
        SIGN,
        "missing-indication",
        [psych_card(POLICY_MN, "depression", "request-123", basis="problem-list")],
        "The sandbox's Rx Sign request with IV ketamine and an IV route substituted (Rx Sign never "
        "attaches a reason; category is one object). The problem list (SNOMED 370143000) decides.",
    )

    # 44 every code under its HL7 OID; ICD-10-CM without the dot
    pid = "pt-oid-44"
    pat = patient(pid, "Okonkwo", ["Ada"], "female", "1974-03-02", "MRN-300144")
    rxcui, name, ndc = MEDS["ket50"]
    mr = med_request(
        "mr-ket-oid-44",
        pid,
        med={"medicationCodeableConcept": cc(coding(OID_RXNORM, rxcui, name), coding(OID_NDC, ndc),
                                              text=name)},
        reason_code=[cc(coding(OID_ICD10CM, "M797", ICD["M79.7"]))],
        dosage=[dict(iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours")[0],
                     route=cc(coding(OID_SNOMED, "47625008", "Intravenous route")))],
    )
    add(
        "44-oid-coded-ketamine-fibromyalgia.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr)),
                     std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090044"))),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "fibromyalgia", mr["id"])],
        "RxNorm, NDC, SNOMED CT and ICD-10-CM all under their HL7 OIDs (cards/code-systems.json); "
        "ICD-10-CM M797 without the dot.",
    )

    # 45 NDC only, 10-digit 5-3-2 form of 68055064301 (lidocaine), CRPS
    pid = "pt-ndc-45"
    pat = patient(pid, "Brandt", ["Hanna"], "female", "1969-10-12", "MRN-300145")
    mr = med_request(
        "mr-lido-ndc-45",
        pid,
        med={"medicationCodeableConcept": cc(coding(NDC, "68055-643-01"))},
        reason_code=[cc(icd("G90.511"))],
        dosage=iv_infusion(2, "mg/min", 1, "Lidocaine 2 mg/min IV over 60 minutes"),
    )
    add(
        "45-ndc-10-digit-lidocaine-crps.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr)),
                     std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090045"))),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "The lidocaine product is coded only by NDC, written 68055-643-01 (10-digit 5-3-2 form of "
        "the 11-digit 68055064301 in medication-lidocaine-iv).",
    )

    # 46 Epic before Feb 2024: the drug only in medicationReference.display, no Medication
    pid = "pt-epic-46"
    pat = patient(pid, "Lindqvist", ["Maja"], "female", "1983-06-08", "MRN-300146")
    mr = med_request(
        "mr-ket-epic-46",
        pid,
        med={"medicationReference": {"reference": "Medication/eKETAMINE50", "display":
                                     "KETAMINE HCL 50 MG/ML IJ SOLN"}},
        reason_code=[cc(icd("F33.2"), text="Major depressive disorder, recurrent, severe")],
        dosage=[dict(ketamine_depression_course("iv", 35)[0], route=epic_iv_route(EPIC_ROUTE_OIDS[0]))],
    )
    add(
        "46-epic-display-only-ketamine-depression.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr)),
                     std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090046"))),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", mr["id"])],
        "Epic's pre-2024 shape: medicationReference with display 'KETAMINE HCL 50 MG/ML IJ SOLN' "
        "and no Medication resource anywhere (the FHIR server is unreachable). Decided from the "
        "display (MedicationFinding.caveat says so), route an Epic-local code under a customer OID.",
    )

    # 47 Epic since 2024: Medication as an extra draftOrders entry; route under another OID
    pid = "pt-epic-47"
    pat = patient(pid, "Haddad", ["Omar"], "male", "1977-12-01", "MRN-300147")
    med = medication_resource("eMED47", "ket50")
    mr = med_request(
        "mr-ket-epic-47",
        pid,
        med={"medicationReference": {"reference": "Medication/eMED47",
                                     "display": "KETAMINE HCL 50 MG/ML IJ SOLN"}},
        reason_code=[cc(icd("G90.511"))],
        dosage=[dict(iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours")[0],
                     route=epic_iv_route(EPIC_ROUTE_OIDS[1]))],
    )
    add(
        "47-epic-medication-entry-local-route-crps.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr), entry(med)),
                     std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090047"))),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "Epic's 2024 shape: the Medication is an extra draftOrders entry; the IV route is an "
        "Epic-local code under a second customer OID, recognised by its display.",
    )

    # 48 "no results" searches as a searchset holding one OperationOutcome
    pid = "pt-epic-48"
    pat = patient(pid, "Novak", ["Iva"], "female", "1990-02-14", "MRN-300148")
    mr = med_request(
        "mr-ket-epic-48",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_code=[cc(icd("F33.2"))],
        dosage=ketamine_depression_course("iv", 35),
    )
    add(
        "48-epic-searchset-with-one-operationoutcome.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr)), {
            "patient": pat,
            "conditions": outcome_only_searchset(f"Condition?patient={pid}"),
            "coverage": outcome_only_searchset(f"Coverage?patient={pid}"),
        }),
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", mr["id"])],
        "Conditions and Coverage prefetch are Epic's 'no results' searchsets: one entry, an "
        "OperationOutcome (severity warning). Not an error; the order's reason decides.",
    )

    # 49 prefetch keys named by the health system, not by our discovery
    pid = "pt-hs-49"
    pat = patient(pid, "Ferro", ["Luca"], "male", "1966-04-30", "MRN-300149")
    crps = condition("cond-crps-49", pid, [icd("G90.511")], "CRPS type I, right upper limb")
    mr = med_request(
        "mr-ket-hs-49",
        pid,
        med={"medicationCodeableConcept": med_cc("ket50")},
        reason_ref=[{"reference": "Condition/cond-crps-49"}],
        dosage=iv_infusion(20, "mg/h", 4, "Ketamine 20 mg/h IV over 4 hours"),
    )
    add(
        "49-prefetch-keys-named-by-the-health-system.json",
        hook_request("order-sign", pid, draft_bundle(entry(mr)), {
            "PATIENT_DEMOGRAPHICS": pat,
            "ACTIVE_PROBLEM_LIST": conditions_bundle(pid, [crps]),
        }),
        SIGN,
        "fires-pain",
        [pain_card(POLICY_MN, "crps", mr["id"])],
        "Prefetch under keys the health system chose; the reasonReference Condition is found "
        "wherever it is in prefetch.",
    )

    # 50-53 encodings and escapes (issue 8 §2; issue 9 §2)
    pid = "pt-enc-50"
    pat = patient(pid, "Moreau", ["Claire"], "female", "1986-08-19", "MRN-300150")
    mr = med_request(
        "mr-ket-enc-50",
        pid,
        med={"medicationCodeableConcept": {"text": "ketamine 50 MG/ML Injectable Solution"}},
        reason_code=[cc(icd("F33.2"))],
        dosage=ketamine_depression_course("iv", 35),
    )
    body = hook_request("order-sign", pid, draft_bundle(entry(mr)),
                        std_prefetch(pid, pat, [], coverage_mn(pid, "MN40090050")))
    text = json.dumps(body, indent=2)
    add(
        "50-unicode-escape-in-drug-text.json",
        body,
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", mr["id"])],
        "The drug is named only in text, and every 'ketamine' is written with a JSON escape "
        "(\\u006betamine): the fast scan must take the full path.",
        raw=text.replace("etamine", "\\u0065tamine").replace("Ketamine", "\\u004betamine") + "\n",
    )
    add(
        "51-utf16-body-refused.json",
        body,
        SIGN,
        "bad-request",
        [],
        "The same request encoded as UTF-16 (with BOM): 415, JSON between systems is UTF-8 "
        "(RFC 8259 §8.1), never an empty 200.",
        status=415,
        raw=text + "\n",
        encoding="utf-16",
    )
    add(
        "52-utf8-bom-ketamine.json",
        body,
        SIGN,
        "fires-psychiatric",
        [psych_card(POLICY_MN, "depression", mr["id"])],
        "The same request in UTF-8 with a byte order mark: the mark is skipped.",
        raw=text + "\n",
        encoding="utf-8-sig",
    )
    add(
        "53-bad-5000-digit-integer.json",
        None,
        SIGN,
        "bad-request",
        [],
        "A 5,000-digit integer: Python's json refuses it with ValueError; 400, not 500.",
        status=400,
        raw='{"hook": "order-sign", "hookInstance": "1", "n": ' + "9" * 5000 + "}\n",
    )

# ================================================================ write
def entry_without_empty_fullurl(obj):
    """Drop fullUrl == '' (used above to mean 'no fullUrl')."""
    if isinstance(obj, dict):
        return {
            k: entry_without_empty_fullurl(v)
            for k, v in obj.items()
            if not (k == "fullUrl" and v == "")
        }
    if isinstance(obj, list):
        return [entry_without_empty_fullurl(v) for v in obj]
    return obj


def write_set(folder: Path, fixtures: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for fx in fixtures:
        path = folder / fx["file"]
        if fx["raw"] is not None:
            path.write_bytes(fx["raw"].encode(fx.get("encoding", "utf-8")))
        else:
            body = entry_without_empty_fullurl(copy.deepcopy(fx["body"]))
            path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", "utf-8")
        manifest.append(
            {k: fx[k] for k in ("file", "service", "outcome", "status", "cards", "note")}
        )
    (folder / "expected.json").write_text(
        json.dumps({"fixtures": manifest}, indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


def main() -> None:
    build_fires_pain()
    build_fires_psych()
    build_order_select()
    build_quiet()
    build_missing_indication()
    build_bad_input()
    build_fhir_fixtures()
    build_real_clients()
    FIXTURES.sort(key=lambda f: f["file"])
    write_set(REQ_DIR, FIXTURES)
    write_set(REQ_FHIR_DIR, FHIR_FIXTURES)
    SERVER_DIR.mkdir(parents=True, exist_ok=True)
    (SERVER_DIR / "seed-bundle.json").write_text(
        json.dumps(seed_bundle(), indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


if __name__ == "__main__":
    main()
