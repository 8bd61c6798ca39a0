"""Card content: policy quoted, plan named, evidence linked, request text escaped, spec limits kept."""

from __future__ import annotations

import itertools
import json

import pytest

from .cds_response_rules import assert_valid_response
from .factories import condition, hook_request, icd, med_request, rxnorm, searchset

SIGN = "/cds-services/iv-anesthetics-order-sign"
KANSAS = {"coverage": searchset({"resourceType": "Coverage", "id": "cv", "status": "active",
                                 "payor": [{"display": "Blue Cross and Blue Shield of Kansas"}]})}


def post(client, body):
    response = client.post(SIGN, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    payload = response.get_json()
    assert_valid_response(payload)
    return payload["cards"]


def test_warning_card_quotes_the_policy_and_names_the_plan(client, app):
    [card] = post(client, hook_request(med_request(rxnorm("238084"), reason=[icd("G90.511")])))
    policy = app.extensions["cds"].knowledge.policies["bcbsmn-ii-271"]
    assert card["indicator"] == "warning"
    assert card["source"]["label"] == "Blue Cross and Blue Shield of Minnesota"
    assert card["source"]["url"] == policy.url
    assert policy.sections["chronic_pain"].statement in card["detail"]
    assert "ketamine" in card["summary"] and "Complex regional pain syndrome" in card["summary"]
    assert "BCBS Minnesota" in card["summary"]
    assert card["links"][0]["url"] == policy.url
    study_links = card["links"][1:]
    assert study_links and all(link["type"] == "absolute" for link in study_links)
    assert all(link["url"] in card["detail"] for link in study_links)
    assert {r["code"] for r in card["overrideReasons"]} >= {"fda-approved-indication", "clinical-trial"}
    assert "No coverage in the request; BCBS Minnesota policy applied by default." in card["detail"]


def test_card_under_coverage_matched_policy_says_why(client):
    [card] = post(client, hook_request(med_request(rxnorm("238084"), reason=[icd("F42.2")]), prefetch=KANSAS))
    assert card["source"]["label"] == "Blue Cross and Blue Shield of Kansas"
    assert "url" not in card["source"]  # the Kansas policy URL is not confirmed, so none is given
    assert "Policy chosen from the patient's coverage (Blue Cross and Blue Shield of Kansas)" in card["detail"]
    assert "obsessive-compulsive disorder" in card["detail"]


def test_text_from_the_request_is_escaped(client):
    evil = '<img src=x onerror=alert(1)> [click](javascript:alert(1)) **bold**'
    order = med_request({"text": f"Ketamine injection {evil}"}, reason=[icd("G90.511", evil)])
    [card] = post(client, hook_request(order))
    assert "<img" not in card["detail"]
    assert "[click](javascript" not in card["detail"]
    assert "\\[click\\]" in card["detail"]
    assert "&lt;img" in card["detail"]


def test_problem_list_card_says_the_indication_is_not_on_the_order(client):
    prefetch = {"conditions": searchset(condition(icd("F32.2", "Major depressive disorder")))}
    [card] = post(client, hook_request(med_request(rxnorm("238084")), prefetch=prefetch))
    assert card["indicator"] == "warning"
    assert "problem list" in card["summary"]
    assert "the order states no indication" in card["detail"]


def test_undocumented_card_is_info_and_asks_for_documentation(client):
    prefetch = {"conditions": searchset()}
    [card] = post(client, hook_request(med_request(rxnorm("1010033")), prefetch=prefetch))
    assert card["indicator"] == "info"
    assert "document the indication" in card["summary"]


def test_one_card_per_in_scope_order_each_with_its_own_uuid(client):
    orders = [med_request(rxnorm("238084"), reason=[icd("F33.2")], id="a"),
              med_request(rxnorm("238084"), reason=[icd("M79.7")], id="b"),
              med_request(rxnorm("199390"), id="c")]
    cards = post(client, hook_request(*orders))
    assert len(cards) == 2
    assert len({c["uuid"] for c in cards}) == 2


FAMILY_CODES = {"chronic_pain_general": "G89.4", "crps": "G90.511", "fibromyalgia": "M79.7",
                "depression": "F33.2", "ptsd": "F43.12", "chronic_daily_headache": "G44.229",
                "postherpetic_neuralgia": "B02.29", "other_neuropathic_pain": "G50.0"}


@pytest.mark.parametrize("family,payer", itertools.product(sorted(FAMILY_CODES), ["mn", "ks"]))
def test_summaries_stay_under_140_characters(client, family, payer):
    body = hook_request(med_request(rxnorm("1010033"), reason=[icd(FAMILY_CODES[family])]),
                        prefetch=KANSAS if payer == "ks" else None)
    [card] = post(client, body)
    assert len(card["summary"]) < 140
