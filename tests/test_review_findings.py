"""Regressions for defects found in review: malformed shapes, non-SNOMED routes, uncoded reasons,
and exemptions that only answer the section they belong to."""

from __future__ import annotations

import pytest

from .factories import hook_request, icd, med_request, rxnorm

SIGN = "/cds-services/iv-anesthetics-order-sign"


def cards_for(client, *orders, status=200):
    response = client.post(SIGN, json=hook_request(*orders))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json().get("cards")


@pytest.mark.parametrize("dosage", [5, "IV"])
def test_malformed_dosage_on_a_ketamine_order_is_400_not_500(client, dosage):
    order = med_request(rxnorm("238084"), reason=[icd("F33.2")])
    order["dosageInstruction"] = dosage
    response = client.post(SIGN, json=hook_request(order))
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_single_dosage_object_is_read_as_a_one_element_array(client):
    order = med_request(rxnorm("238084"), reason=[icd("F33.2")])
    order["dosageInstruction"] = {"route": {"text": "IV"}}  # issue 8 §1: not a 400
    assert len(cards_for(client, order)) == 1


def test_malformed_dose_and_rate_without_route_is_400_not_500(client):
    order = med_request(rxnorm("238084"), route=None, reason=[icd("F33.2")])
    order["dosageInstruction"] = [{"doseAndRate": 5}]
    assert client.post(SIGN, json=hook_request(order)).status_code == 400


@pytest.mark.parametrize("route", [
    {"coding": [{"system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "code": "C38276"}]},
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "code": "IVINJ"}]},
    {"coding": [{"system": "urn:local:routes", "code": "17", "display": "IV"}]},
    {"text": "IV drip"},
    {"text": "i.v. infusion over 40 minutes"},
])
def test_intravenous_routes_outside_snomed_are_recognised(client, route):
    assert len(cards_for(client, med_request(rxnorm("238084"), route=route, reason=[icd("F33.2")]))) == 1


def test_unrecognised_route_code_falls_back_to_the_infusion_rate(client):
    route = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0162", "code": "IV"}]}
    assert len(cards_for(client, med_request(rxnorm("238084"), route=route, rate=True,
                                             reason=[icd("F33.2")]))) == 1


@pytest.mark.parametrize("route", [
    {"coding": [{"system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "code": "C28161"}]},
    {"text": "IM"},
    {"coding": [{"system": "urn:local:routes", "code": "3", "display": "Subcutaneous"}]},
])
def test_non_iv_routes_outside_snomed_stay_quiet(client, route):
    assert cards_for(client, med_request(rxnorm("238084"), route=route, rate=True, reason=[icd("F33.2")])) == []


def test_reason_condition_without_a_code_is_named_not_replaced_by_the_problem_list(client):
    order = med_request(rxnorm("238084"), contained=[{
        "resourceType": "Condition", "id": "c1", "code": {"text": "depression"},
        "subject": {"reference": "Patient/p1"}}], reasonReference=[{"reference": "#c1"}])
    [card] = cards_for(client, order)
    assert card["indicator"] == "info"
    assert "'depression' reads as a psychiatric indication" in card["detail"]
    assert "problem list shows" not in card["summary"]


def test_text_only_reason_code_is_named(client):
    [card] = cards_for(client, med_request(rxnorm("238084"), reason=[{"text": "treatment-resistant depression"}]))
    assert "'treatment-resistant depression' reads as a psychiatric indication" in card["detail"]


@pytest.mark.parametrize("codes,warns", [
    (["F33.2", "R52"], True),     # unspecified pain answers nothing
    (["F33.2", "Z51.5"], True),   # palliative care answers a pain use, not depression
    (["G89.4", "Z51.5"], False),  # ... but does answer a chronic-pain code
    (["G89.4", "G89.3"], False),
])
def test_exemptions_only_answer_the_section_they_belong_to(client, codes, warns):
    order = med_request(rxnorm("238084"), reason=[icd(c) for c in codes])
    assert bool(cards_for(client, order)) is warns


def test_an_fda_labeled_use_on_the_order_explains_the_whole_order(client):
    order = med_request(rxnorm("1010033"), reason=[icd("I47.20"), icd("F33.2")])
    assert cards_for(client, order) == []
