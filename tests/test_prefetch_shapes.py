"""Prefetch as clients really send it: missing, null, empty, OperationOutcome, paginated."""

from __future__ import annotations

import logging

import pytest

from .factories import condition, hook_request, icd, searchset
from .local_fhir import ketamine_order

SERVICE = "/cds-services/iv-anesthetics-order-sign"
EXT = "iv-anesthetics-cds"
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "exception", "diagnostics": "query failed"}]}
KANSAS_COVERAGE = {
    "resourceType": "Coverage", "id": "cov1", "status": "active",
    "beneficiary": {"reference": "Patient/p1"},
    "payor": [{"reference": "Organization/org-ks"}],
}
KANSAS_ORG = {"resourceType": "Organization", "id": "org-ks", "name": "Blue Cross and Blue Shield of Kansas"}
DEPRESSION = condition(icd("F33.2", "Major depressive disorder, recurrent severe"), id="c-mdd")


def only_card(client, prefetch: dict | None):
    response = client.post(SERVICE, json=hook_request(ketamine_order(None), prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    return card


@pytest.mark.parametrize("conditions", ["missing", None, OUTCOME, searchset(OUTCOME)],
                         ids=["missing-key", "null", "operation-outcome", "searchset-with-error-outcome"])
def test_unanswered_conditions_prefetch_says_the_problem_list_could_not_be_retrieved(client, conditions, caplog):
    caplog.set_level(logging.INFO)
    prefetch = {"coverage": searchset()}
    if conditions != "missing":
        prefetch["conditions"] = conditions
    card = only_card(client, prefetch)
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "the patient's active problem list could not be checked" in card["detail"]
    assert "could not be retrieved: the patient's active problem list" in caplog.text


def test_empty_conditions_searchset_means_no_problems_not_missing_data(client):
    card = only_card(client, {"conditions": searchset(), "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "could not be checked" not in card["detail"]


def test_prefetched_problem_list_with_a_policy_condition_warns(client):
    card = only_card(client, {"conditions": searchset(DEPRESSION), "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "problem-list"
    assert card["extension"][EXT]["family"] == "depression"


def test_paginated_conditions_prefetch_without_fhir_server_uses_the_first_page_and_says_so(client, caplog):
    caplog.set_level(logging.INFO)
    page = searchset(DEPRESSION)
    page["link"] = [{"relation": "next", "url": "http://127.0.0.1:9/fhir/Condition?page=2"}]
    body = hook_request(ketamine_order(None), prefetch={"conditions": page, "coverage": searchset()})
    response = client.post(SERVICE, json=body)
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["family"] == "depression"
    assert "further pages of the prefetched active conditions" in caplog.text


def test_first_page_of_a_paginated_problem_list_without_a_policy_condition_is_called_part_of_the_list(client):
    page = searchset(condition(icd("I10", "Essential hypertension"), id="c-htn"))
    page["link"] = [{"relation": "next", "url": "http://127.0.0.1:9/fhir/Condition?page=2"}]
    card = only_card(client, {"conditions": page, "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "the part of the patient's active problem list that could be retrieved shows no condition" in card["detail"]
    assert "the rest of the list could not be retrieved" in card["detail"]


def test_a_complete_problem_list_without_a_policy_condition_is_not_called_partial(client):
    card = only_card(client, {"conditions": searchset(condition(icd("I10"), id="c-htn")), "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "the active problem list shows no condition" in card["detail"]
    assert "could not be retrieved" not in card["detail"]


def test_conditions_searchset_whose_entries_are_the_resources_themselves_is_read(client):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [DEPRESSION]}
    card = only_card(client, {"conditions": bundle, "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "problem-list"
    assert card["extension"][EXT]["family"] == "depression"


def test_conditions_searchset_with_its_entry_as_one_object_is_read(client):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": DEPRESSION}}
    card = only_card(client, {"conditions": bundle, "coverage": searchset()})
    assert card["extension"][EXT]["family"] == "depression"


@pytest.mark.parametrize("unreadable", [{"fullUrl": "urn:uuid:1"}, {"resource": "Condition/c9"}, "Condition/c9"],
                         ids=["no-resource", "resource-as-text", "entry-as-text"])
def test_problem_list_entry_holding_no_readable_resource_makes_the_list_partial(client, unreadable, caplog):
    caplog.set_level(logging.INFO)
    conditions = searchset(condition(icd("I10", "Essential hypertension"), id="c-htn"))
    conditions["entry"].append(unreadable)
    card = only_card(client, {"conditions": conditions, "coverage": searchset()})
    assert card["extension"][EXT]["basis"] == "undocumented"
    assert "the part of the patient's active problem list that could be retrieved shows no condition" in card["detail"]
    assert "1 prefetched active condition entry holding no readable resource" in caplog.text


def test_problem_list_entry_without_a_resource_and_an_unreachable_fhir_server_keeps_what_was_prefetched(client):
    conditions = searchset(DEPRESSION)
    conditions["entry"].append({"fullUrl": "urn:uuid:1"})
    body = hook_request(ketamine_order(None), prefetch={"conditions": conditions, "coverage": searchset()})
    body["fhirServer"] = "http://127.0.0.1:9/fhir"  # nothing listens on the discard port
    response = client.post(SERVICE, json=body)
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "problem-list"
    assert card["extension"][EXT]["family"] == "depression"


@pytest.mark.parametrize("coverage", ["missing", None, OUTCOME],
                         ids=["missing-key", "null", "operation-outcome"])
def test_unanswered_coverage_prefetch_applies_the_default_policy_and_says_why(client, coverage, caplog):
    caplog.set_level(logging.INFO)
    prefetch = {"conditions": searchset(DEPRESSION)}
    if coverage != "missing":
        prefetch["coverage"] = coverage
    card = only_card(client, prefetch)
    assert card["extension"][EXT]["policyBasis"] == "default"
    if coverage is OUTCOME:  # the EHR tried and failed: the coverage is unknown, not absent
        assert "could not be retrieved: the patient's coverage (the EHR reported an error" in caplog.text
        assert "The patient's coverage could not be checked" in card["detail"]
    else:
        assert "could not be retrieved: the patient's coverage (not prefetched)" in caplog.text
        assert "No active coverage in the request" in card["detail"]


def test_empty_coverage_searchset_applies_the_default_policy(client, caplog):
    caplog.set_level(logging.INFO)
    card = only_card(client, {"conditions": searchset(DEPRESSION), "coverage": searchset()})
    assert card["extension"][EXT]["policyBasis"] == "default"
    assert "no active coverage with a payor was available" in caplog.text


def test_coverage_entry_holding_no_resource_is_named_in_the_policy_choice(client, caplog):
    caplog.set_level(logging.INFO)
    coverage = searchset()
    coverage["entry"].append({"fullUrl": "urn:uuid:cov"})
    card = only_card(client, {"conditions": searchset(DEPRESSION), "coverage": coverage})
    assert card["extension"][EXT]["policyBasis"] == "default"
    assert "1 prefetched coverage entry holding no readable resource" in caplog.text


def test_prefetched_coverage_payor_resolves_through_a_prefetched_organization(client):
    coverage = searchset(KANSAS_COVERAGE, KANSAS_ORG)
    card = only_card(client, {"conditions": searchset(DEPRESSION), "coverage": coverage})
    assert card["extension"][EXT]["policy"] == "bcbsks-iv-anesthetics"
    assert card["extension"][EXT]["policyBasis"] == "coverage"


def test_unresolvable_payor_reference_is_named_in_the_default_policy_reason(client, caplog):
    caplog.set_level(logging.INFO)
    card = only_card(client, {"conditions": searchset(DEPRESSION), "coverage": searchset(KANSAS_COVERAGE)})
    assert card["extension"][EXT]["policyBasis"] == "default"
    assert "Organization/org-ks (could not be retrieved)" in caplog.text
