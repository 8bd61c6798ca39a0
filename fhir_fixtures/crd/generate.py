"""Generate the Da Vinci CRD request fixtures in this folder, and their expected outcomes.

Run from the repository root:  python fhir_fixtures/crd/generate.py
Each request is the CRD IG's order-sign example (shared/reference/crd-examples/davinci-crd-2.2.1/
CRDServiceRequest.json: hookInstance, fhirAuthorization, context, Patient/Encounter/Coverage
prefetch, davinci-crd extensions) with draft orders taken from fhir_fixtures/hook-requests/
(their codes are sourced there). Changes to the IG shape: fhirServer points at a closed loopback
port, prefetch carries the `conditions` key of our discovery, and the Coverage's payor names a
plan whose policy is on file here (the IG's Acme Health Plan has none; one fixture keeps it).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
IG_REQUEST = ROOT.parent / "shared" / "reference" / "crd-examples" / "davinci-crd-2.2.1" / "CRDServiceRequest.json"
HOOK_REQUESTS = ROOT / "fhir_fixtures" / "hook-requests"
SIGN = "iv-anesthetics-order-sign"
SELECT = "iv-anesthetics-order-select"
KANSAS = "Blue Cross and Blue Shield of Kansas"


def _orders(name: str) -> list[dict]:
    data = json.loads((HOOK_REQUESTS / name).read_text(encoding="utf-8"))
    return copy.deepcopy(data["context"]["draftOrders"]["entry"])


def _request(entries: list[dict], *, payor: str | None = KANSAS, coverages: int = 1,
             configuration: dict | str | None = "ig", hook: str = "order-sign",
             selections: list[str] | None = None, conditions_from: str | None = None) -> dict:
    request = json.loads(IG_REQUEST.read_text(encoding="utf-8"))
    request["fhirServer"] = "http://127.0.0.1:9/fhir"
    request["hook"] = hook
    for entry in entries:
        resource = entry["resource"]
        if resource.get("resourceType") == "MedicationRequest":
            resource["subject"] = {"reference": "Patient/123"}
    request["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                         "entry": entries}
    if hook == "order-select":
        request["context"]["selections"] = selections or []
    prefetch = request["prefetch"]
    prefetch["conditions"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    if conditions_from:
        source = json.loads((HOOK_REQUESTS / conditions_from).read_text(encoding="utf-8"))
        prefetch["conditions"] = source["prefetch"]["conditions"]
    coverage_bundle = prefetch["coverage"]
    template = coverage_bundle["entry"][0]
    if payor is None:
        coverage_bundle["entry"], coverage_bundle["total"] = [], 0
    else:
        if payor != "ig":
            template["resource"]["payor"] = [{"display": payor}]
        coverage_bundle["entry"] = []
        for n in range(coverages):
            entry = copy.deepcopy(template)
            if n:
                entry["resource"]["id"] = f"COV{n + 1}"
                entry["fullUrl"] = entry["fullUrl"].replace("COV1", f"COV{n + 1}")
            coverage_bundle["entry"].append(entry)
        coverage_bundle["total"] = coverages
    if configuration is None:
        request.pop("extension", None)
    elif configuration != "ig":
        request["extension"] = {"davinci-crd.configuration": configuration}
    return request


KETAMINE_DEPRESSION = "13-depression-ketamine-f33.json"
NO_REASON = "32-no-reason-problem-list-empty.json"
FDA_LABELLED = "19-lidocaine-iv-ventricular-tachycardia.json"
NOT_ADDRESSED = "27-ketamine-cancer-pain.json"
TWO_ORDERS = "34-two-orders-both-fire.json"
SELECT_SOURCE = "17-order-select-selected-ketamine-depression.json"


PROBLEM_LIST = "31-no-reason-problem-list-depression.json"


def _with_reason(name: str, reason: dict) -> list[dict]:
    """The first order of a fixture with its reason replaced (reasonCode or reasonReference)."""
    entries = _orders(name)
    order = entries[0]["resource"]
    order.pop("reasonCode", None)
    order.pop("reasonReference", None)
    order.update(reason)
    return entries


# ICD-10-CM G50.0 (trigeminal neuralgia) is in cards/valuesets (other neuropathic pain, a section
# that covers conditions "including but not limited to" those it names: an advisory).
ADVISORY_REASON = {"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                               "code": "G50.0"}]}]}
UNRESOLVABLE_REASON = {"reasonReference": [{"reference": "Condition/not-on-any-server"}]}


def _select_entries() -> tuple[list[dict], list[str]]:
    data = json.loads((HOOK_REQUESTS / SELECT_SOURCE).read_text(encoding="utf-8"))
    return copy.deepcopy(data["context"]["draftOrders"]["entry"]), data["context"]["selections"]


def cases() -> list[tuple[str, str, dict, dict]]:
    """(file, service, request, expected)."""
    select_entries, selections = _select_entries()
    nc, cond = "not-covered", "conditional"
    COV1, COV2 = "Coverage/COV1", "Coverage/COV2"
    return [
        ("01-ig-shape-ketamine-depression.json", SIGN, _request(_orders(KETAMINE_DEPRESSION)),
         {"cards": 1, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "investigational indication on the order (IG configuration, requestedVersion 2.2)"}),
        ("02-ig-shape-coverage-info-false.json", SIGN,
         _request(_orders(KETAMINE_DEPRESSION), configuration={"coverage-info": False}),
         {"cards": 1, "actions": [], "row": "coverage-info: false"}),
        ("03-no-configuration.json", SIGN, _request(_orders(KETAMINE_DEPRESSION), configuration=None),
         {"cards": 1, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "no davinci-crd extension at all"}),
        ("04-cards-off.json", SIGN,
         _request(_orders(KETAMINE_DEPRESSION), configuration={"off-guideline": False}),
         {"cards": 0, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "card option false"}),
        ("05-no-indication.json", SIGN, _request(_orders(NO_REASON)),
         {"cards": 1, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"], "reason": "Diagnosis needed"}],
          "row": "no documented indication"}),
        ("06-fda-labelled.json", SIGN, _request(_orders(FDA_LABELLED)),
         {"cards": 0, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"], "reason": "No ruling"}],
          "row": "FDA-labelled use (no ruling)"}),
        ("07-not-addressed.json", SIGN, _request(_orders(NOT_ADDRESSED)),
         {"cards": 0, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"], "reason": "No ruling"}],
          "row": "indication the policy does not address (no ruling)"}),
        ("15-problem-list-shows-listed-condition.json", SIGN,
         _request(_orders(PROBLEM_LIST), conditions_from=PROBLEM_LIST),
         {"cards": 1, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"], "reason": "Diagnosis needed"}],
          "row": "no indication on the order, problem list shows a listed condition"}),
        ("16-advisory-including-but-not-limited-to.json", SIGN,
         _request(_with_reason(KETAMINE_DEPRESSION, ADVISORY_REASON)),
         {"cards": 1, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"],
                                   "reason": "Clinical review needed"}],
          "row": "indication that may fall under a section"}),
        ("17-indication-unavailable.json", SIGN,
         _request(_with_reason(KETAMINE_DEPRESSION, UNRESOLVABLE_REASON)),
         {"cards": 1, "actions": [{"covered": [cond], "coverages": ["Coverage/COV1"], "reason": "Diagnosis needed"}],
          "row": "indication could not be retrieved"}),
        ("08-payer-without-policy.json", SIGN, _request(_orders(KETAMINE_DEPRESSION), payor="ig"),
         {"cards": 1, "actions": [], "row": "payer with no policy here (the IG's Acme Health Plan)"}),
        ("09-no-coverage.json", SIGN, _request(_orders(KETAMINE_DEPRESSION), payor=None),
         {"cards": 1, "actions": [], "row": "no Coverage"}),
        ("10-two-orders-two-coverages.json", SIGN, _request(_orders(TWO_ORDERS), coverages=2),
         {"cards": 2, "actions": [{"covered": [nc, nc], "coverages": [COV1, COV2], "reason": "Not covered"},
                                  {"covered": [nc, nc], "coverages": [COV1, COV2], "reason": "Not covered"}],
          "row": "two orders, two Coverages of the same plan"}),
        ("11-max-cards-1.json", SIGN, _request(_orders(TWO_ORDERS), configuration={"max-cards": 1}),
         {"cards": 1, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"},
                                  {"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "max-cards caps the cards, not the coverage information"}),
        ("12-nonsense-configuration.json", SIGN,
         _request(_orders(KETAMINE_DEPRESSION),
                  configuration={"coverage-info": "no", "max-cards": -3, "made-up": True}),
         {"cards": 1, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "nonsensical settings are ignored"}),
        ("13-order-select.json", SELECT,
         _request(select_entries, hook="order-select", selections=selections),
         {"cards": 1, "actions": [{"covered": [nc], "coverages": ["Coverage/COV1"], "reason": "Not covered"}],
          "row": "order-select, the selected order only"}),
        ("14-order-select-coverage-info-false.json", SELECT,
         _request(select_entries, hook="order-select", selections=selections,
                  configuration={"coverage-info": False}),
         {"cards": 1, "actions": [], "row": "order-select with coverage-info: false"}),
    ]


def main() -> None:
    manifest = []
    for name, service, request, expected in cases():
        (HERE / name).write_text(json.dumps(request, indent=1, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
        manifest.append({"file": name, "service": service, **expected})
    (HERE / "expected.json").write_text(json.dumps({"fixtures": manifest}, indent=1) + "\n",
                                        encoding="utf-8")


if __name__ == "__main__":
    main()
