"""End to end against a real FHIR server: reads, searches, pagination and the payor lookup."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests

from cds_service import create_app
from cds_service.fhir_client import FhirClient, FhirSettings

from .conftest import FIXTURES, load_json
from .local_fhir import body_with_server, ketamine_order
from .sekmet_server import load_bundle, sekmet

SERVICE = "/cds-services/iv-anesthetics-order-sign"
EXT = "iv-anesthetics-cds"
FIXTURE_DIR = FIXTURES / "hook-requests-fhir"
MANIFEST = load_json(FIXTURE_DIR / "expected.json")["fixtures"]
PAGE_SIZE = 5  # seed-pat-3 has 14 active Conditions: three pages

# A Coverage whose payor is only a reference: the policy can be found only through the Organization.
PAYOR_BY_REFERENCE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "it-pat-org", "name": [{"family": "Lund"}]},
         "request": {"method": "PUT", "url": "Patient/it-pat-org"}},
        {"resource": {"resourceType": "Coverage", "id": "it-cov-org", "status": "active",
                      "beneficiary": {"reference": "Patient/it-pat-org"},
                      "payor": [{"reference": "Organization/seed-org-bcbsks"}]},
         "request": {"method": "PUT", "url": "Coverage/it-cov-org"}},
    ],
}


@pytest.fixture(scope="session")
def fhir_base(tmp_path_factory):
    with sekmet(tmp_path_factory.mktemp("sekmet")) as base:
        load_bundle(base, load_json(FIXTURES / "fhir-server" / "seed-bundle.json"))
        load_bundle(base, PAYOR_BY_REFERENCE)
        yield base


@pytest.fixture(scope="module")
def paging_app():
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "FHIR_PAGE_SIZE": PAGE_SIZE})


def fixture_body(name: str, base: str) -> dict:
    return json.loads((FIXTURE_DIR / name).read_text(encoding="utf-8").replace("{{FHIR_BASE}}", base))


def card_facts(card: dict) -> dict:
    ext = card["extension"][EXT]
    return {"indicator": card["indicator"], **{k: ext.get(k) for k in
                                               ("policy", "section", "family", "basis", "order")}}


@pytest.mark.parametrize("case", MANIFEST, ids=[c["file"] for c in MANIFEST])
def test_fixture_fetched_from_the_fhir_server_gets_expected_outcome(paging_app, fhir_base, case):
    response = paging_app.test_client().post(f"/cds-services/{case['service']}",
                                             json=fixture_body(case["file"], fhir_base))
    assert response.status_code == case["status"], response.get_data(as_text=True)
    want = [{k: c.get(k) for k in ("indicator", "policy", "section", "family", "basis", "order")}
            for c in case["cards"]]
    assert [card_facts(c) for c in response.get_json()["cards"]] == want
    for card in response.get_json()["cards"]:
        assert "Could not be retrieved" not in card["detail"]


def test_condition_search_follows_every_page(fhir_base):
    client = FhirClient(fhir_base, None, FhirSettings(page_size=PAGE_SIZE), time.monotonic() + 5)
    found = client.search("Condition", {"patient": "seed-pat-3", "clinical-status": "active"})
    assert (found.complete, found.pages, len(found.resources)) == (True, 3, 14)


def test_page_cap_stops_following_and_the_card_says_so(fhir_base, caplog):
    caplog.set_level(logging.INFO)
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "FHIR_PAGE_SIZE": PAGE_SIZE,
                      "FHIR_MAX_PAGES": 2})
    response = app.test_client().post(SERVICE, json=fixture_body("03-server-paged-problem-list.json",
                                                                 fhir_base))
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["basis"] == "undocumented"  # the depression entry is on page 3
    assert "the rest of the list could not be retrieved" in card["detail"]
    assert "part of the active conditions (more than 2 pages of Condition" in caplog.text


def test_payor_organization_is_read_to_choose_the_policy(paging_app, fhir_base, caplog):
    caplog.set_level(logging.INFO)
    body = body_with_server(fhir_base, ketamine_order("Condition/seed-cond-2-ptsd"), patient="it-pat-org")
    response = paging_app.test_client().post(SERVICE, json=body)
    [card] = response.get_json()["cards"]
    assert card["extension"][EXT]["policy"] == "bcbsks-iv-anesthetics"
    assert card["extension"][EXT]["policyBasis"] == "coverage"
    assert "Policy chosen from the patient's coverage (Blue Cross and Blue Shield of Kansas)" in card["detail"]
    assert "payor name 'Blue Cross and Blue Shield of Kansas'" in caplog.text


def test_paginated_prefetch_is_completed_through_the_next_link(paging_app, fhir_base):
    first_page = requests.get(f"{fhir_base}/Condition", timeout=5, params={
        "patient": "seed-pat-3", "clinical-status": "active", "_count": str(PAGE_SIZE)}).json()
    assert any(link["relation"] == "next" for link in first_page["link"])
    body = body_with_server(fhir_base, ketamine_order(None), patient="seed-pat-3",
                            prefetch={"conditions": first_page})
    response = paging_app.test_client().post(SERVICE, json=body)
    [card] = response.get_json()["cards"]
    assert (card["extension"][EXT]["basis"], card["extension"][EXT]["family"]) == ("problem-list",
                                                                                   "depression")
