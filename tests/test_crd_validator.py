"""The CRD validator itself: it passes the package's own annotated example and fails on
broken coverage information (so the checks hooked into every response can fail)."""

from __future__ import annotations

import copy
import json

import pytest

from .crd_validator import (
    EXTENSION_URL,
    PACKAGE,
    as_boolean_tests,
    coverage_information_problems,
    discovery_crd_problems,
    invariants,
    slices,
)


def _package_example() -> dict:
    return json.loads((PACKAGE / "example" / "MedicationRequest-annotated-example.json").read_text())


def _payload(resource: dict) -> dict:
    return {"cards": [], "systemActions": [{"type": "update", "description": "coverage information",
                                            "resource": resource}]}


def _ours() -> dict:
    return {
        "resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"text": "ketamine"}, "subject": {"reference": "Patient/1"},
        "extension": [{"url": EXTENSION_URL, "extension": [
            {"url": "coverage", "valueReference": {"reference": "Coverage/c1"}},
            {"url": "covered", "valueCode": "not-covered"},
            {"url": "reason", "valueCodeableConcept": {"text": "Not covered: policy X"}},
            {"url": "date", "valueDate": "2026-12-01"},
            {"url": "coverage-assertion-id", "valueString": "a1"},
        ]}],
    }


def _with_parts(parts: list[dict]) -> dict:
    resource = _ours()
    resource["extension"][0]["extension"] = parts
    return resource


def _parts() -> list[dict]:
    return copy.deepcopy(_ours()["extension"][0]["extension"])


def test_sub_extension_slices_and_invariants_are_read_from_the_package():
    assert {"coverage", "covered", "pa-needed", "date", "coverage-assertion-id", "detail"} <= set(slices())
    assert slices()["covered"]["min"] == 1 and slices()["covered"]["max"] == "1"
    assert set(invariants()) == {"crd-ci-q1", "crd-ci-q2", "crd-ci-q3", "crd-ci-q4", "crd-ci-q5"}


def test_where_used_as_a_boolean_is_read_as_exists():
    assert as_boolean_tests("extension.where(url = 'a') implies extension.where(url = 'b').exists()") == \
        "extension.where(url = 'a').exists() implies extension.where(url = 'b').exists()"


def test_the_packages_annotated_example_passes():
    assert coverage_information_problems(_payload(_package_example())) == []


def test_our_shape_passes():
    assert coverage_information_problems(_payload(_ours())) == []


def _problems_with(parts: list[dict]) -> list[str]:
    return coverage_information_problems(_payload(_with_parts(parts)))


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: [*p, {"url": "pa-needed", "valueCode": "no-auth"}], "crd-ci-q2: not-covered with pa-needed"),
    (lambda p: [x if x["url"] != "covered" else {"url": "covered", "valueCode": "conditional"} for x in p]
     + [{"url": "info-needed", "valueCode": "OTH"}], "crd-ci-q2 evaluates to [False]"),
    (lambda p: [*p, {"url": "info-needed", "valueCode": "OTH"}], "crd-ci-q3"),
    (lambda p: [*p, {"url": "satisfied-pa-id", "valueString": "x"}], "crd-ci-q5"),
    (lambda p: [*p, {"url": "questionnaire", "valueCanonical": "http://x/Q"}], "crd-ci-q1"),
    (lambda p: [x for x in p if x["url"] != "date"], "0 x date, cardinality is 1..1"),
    (lambda p: [*p, {"url": "coverage-assertion-id", "valueString": "again"}], "2 x coverage-assertion-id"),
    (lambda p: [*p, {"url": "coverageInfo", "valueCode": "covered"}], "is not a sub-extension"),
    (lambda p: [x if x["url"] != "covered" else {"url": "covered", "valueCode": "indeterminate"} for x in p],
     "'indeterminate' is not in http://hl7.org/fhir/us/davinci-crd/ValueSet/coverageInfo"),
    (lambda p: [x if x["url"] != "date" else {"url": "date", "valueString": "2026-12-01"} for x in p],
     "value must be one of ['valueDate']"),
])
def test_broken_coverage_information_is_caught(mutate, expected):
    problems = _problems_with(mutate(_parts()))
    assert any(expected in p for p in problems), problems


def test_invalid_r4_medicationrequest_is_caught():
    resource = _ours()
    resource["status"] = 42
    assert any("not valid R4" in p for p in coverage_information_problems(_payload(resource)))


def test_one_coverage_with_two_ids_and_two_coverages_sharing_an_id_are_caught():
    a, b = _ours(), _ours()
    b["id"] = "mr2"
    b["extension"][0]["extension"][4] = {"url": "coverage-assertion-id", "valueString": "other"}
    payload = _payload(a)
    payload["systemActions"].append({"type": "update", "description": "d", "resource": b})
    assert any("several coverage-assertion-ids" in p for p in coverage_information_problems(payload))
    c = _ours()
    c["extension"][0]["extension"][0] = {"url": "coverage", "valueReference": {"reference": "Coverage/c2"}}
    payload = _payload(a)
    payload["systemActions"].append({"type": "update", "description": "d", "resource": c})
    assert any("share a coverage-assertion-id" in p for p in coverage_information_problems(payload))


def test_a_changed_order_is_caught():
    sent = {k: v for k, v in _ours().items() if k != "extension"}
    request = {"context": {"draftOrders": {"entry": [{"resource": {**sent, "status": "active"}}]}}}
    assert any("changed" in p for p in coverage_information_problems(_payload(_ours()), request))
    request["context"]["draftOrders"]["entry"][0]["resource"] = sent
    assert coverage_information_problems(_payload(_ours()), request) == []


def test_discovery_without_crd_extensions_is_caught():
    problems = discovery_crd_problems({"hook": "order-sign", "id": "x", "description": "d"}, "s")
    assert any("davinci-crd.version" in p for p in problems)
    assert any("dev-5" in p for p in problems)
