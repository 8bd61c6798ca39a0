"""Each row of the CRD decision table, as a fixture in fhir_fixtures/crd/ with its expected
system actions (order-sign and order-select, with and without configuration)."""

from __future__ import annotations

import json

import pytest

from cds_service.crd.coverage_info import EXTENSION_URL

from .conftest import FIXTURES, load_json
from .crd_validator import TEMP, coverage_information_problems

CRD = FIXTURES / "crd"
MANIFEST = load_json(CRD / "expected.json")["fixtures"]


def _post(client, case):
    body = (CRD / case["file"]).read_bytes()
    response = client.post(f"/cds-services/{case['service']}", data=body,
                           content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(body), response.get_json()


def _assertions(action):
    reps = [e for e in action["resource"]["extension"] if e["url"] == EXTENSION_URL]
    return [{p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in r["extension"]}
            for r in reps]


@pytest.mark.parametrize("case", MANIFEST, ids=[c["file"] for c in MANIFEST])
def test_crd_fixture_gets_expected_cards_and_coverage_information(client, case):
    request, payload = _post(client, case)
    assert len(payload["cards"]) == case["cards"]
    actions = payload.get("systemActions", [])
    got = [{"covered": [a["covered"] for a in _assertions(action)],
            "coverages": [a["coverage"]["reference"] for a in _assertions(action)],
            "reason": {a["reason"]["text"].split(":")[0] for a in _assertions(action)}}
           for action in actions]
    assert got == [{"covered": a["covered"], "coverages": a["coverages"], "reason": {a["reason"]}}
                   for a in case["actions"]]
    assert coverage_information_problems(payload, request) == []


def test_ig_shape_response_is_not_covered_with_reason_naming_plan_policy_section_indication(client):
    _, payload = _post(client, MANIFEST[0])
    (action,) = payload["systemActions"]
    (assertion,) = _assertions(action)
    reason = assertion["reason"]["text"]
    for part in ("Blue Cross and Blue Shield of Kansas", "Intravenous Anesthetics",
                 "revision 12-23-2024", "section", "F33.2"):
        assert part in reason
    assert "pa-needed" not in assertion
    assert len(assertion["date"]) == 10 and assertion["coverage-assertion-id"]


def test_conditional_rows_say_what_is_needed_and_never_rule(client):
    rows = {c["file"]: c for c in MANIFEST}
    for name, needle in (("05-no-indication.json", "Diagnosis needed"),
                         ("06-fda-labelled.json", "No ruling"),
                         ("07-not-addressed.json", "No ruling")):
        _, payload = _post(client, rows[name])
        (assertion,) = _assertions(payload["systemActions"][0])
        assert assertion["covered"] == "conditional"
        assert assertion["pa-needed"] == "conditional" and assertion["info-needed"] == "OTH"
        assert needle in assertion["reason"]["text"]


def test_cards_carry_the_crd_2_0_card_type_and_say_what_they_add(client):
    _, payload = _post(client, MANIFEST[0])
    (card,) = payload["cards"]
    assert card["source"]["topic"]["system"] == TEMP
    assert card["source"]["topic"]["code"] == "off-guideline"
    (assertion,) = _assertions(payload["systemActions"][0])
    assert assertion["coverage-assertion-id"] not in card["detail"]  # no technical ids on a card (issue 8 §7)
    assert "this card adds the policy statement" in card["detail"]


def test_multi_order_cards_name_their_order(client):
    rows = {c["file"]: c for c in MANIFEST}
    request, payload = _post(client, rows["10-two-orders-two-coverages.json"])
    ids = [e["resource"]["id"] for e in request["context"]["draftOrders"]["entry"]]
    for n, (card, order_id) in enumerate(zip(payload["cards"], ids, strict=True), 1):
        first_line = card["detail"].split("\n")[0]
        assert first_line.startswith(f"**Order {n} of {len(ids)}: IV "), first_line
        assert order_id not in first_line and "MedicationRequest/" not in first_line  # words, not ids (issue 8 §7)


def test_same_coverage_reuses_one_id_and_different_coverages_get_distinct_ids(client):
    rows = {c["file"]: c for c in MANIFEST}
    _, payload = _post(client, rows["10-two-orders-two-coverages.json"])
    ids = {}
    for action in payload["systemActions"]:
        for a in _assertions(action):
            ids.setdefault(a["coverage"]["reference"], set()).add(a["coverage-assertion-id"])
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == 2


def test_order_is_returned_exactly_as_received_plus_coverage_information(client):
    request, payload = _post(client, MANIFEST[0])
    sent = request["context"]["draftOrders"]["entry"][0]["resource"]
    resource = payload["systemActions"][0]["resource"]
    assert {k: v for k, v in resource.items() if k != "extension"} == sent
    assert [e["url"] for e in resource["extension"]] == [EXTENSION_URL]
