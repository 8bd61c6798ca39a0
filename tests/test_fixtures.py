"""Every request fixture in fhir_fixtures/ gets its expected outcome."""

from __future__ import annotations

import pytest

from .cds_response_rules import assert_valid_response
from .conftest import FIXTURES, load_json

MANIFEST = load_json(FIXTURES / "hook-requests" / "expected.json")["fixtures"]
EXTENSION = "iv-anesthetics-cds"


@pytest.mark.parametrize("case", MANIFEST, ids=[c["file"] for c in MANIFEST])
def test_fixture_gets_expected_outcome(client, case):
    body = (FIXTURES / "hook-requests" / case["file"]).read_bytes()
    response = client.post(f"/cds-services/{case['service']}", data=body,
                           content_type="application/json")
    assert response.status_code == case["status"], response.get_data(as_text=True)
    payload = response.get_json()
    if case["status"] != 200:
        assert payload["resourceType"] == "OperationOutcome"
        assert payload["issue"] and payload["issue"][0]["diagnostics"]
        return
    assert_valid_response(payload)
    got = [
        {
            "indicator": card["indicator"],
            "policy": card["extension"][EXTENSION]["policy"],
            "section": card["extension"][EXTENSION].get("section"),
            "family": card["extension"][EXTENSION].get("family"),
            "basis": card["extension"][EXTENSION]["basis"],
            "order": card["extension"][EXTENSION]["order"],
        }
        for card in payload["cards"]
    ]
    want = [{k: c.get(k) for k in ("indicator", "policy", "section", "family", "basis", "order")}
            for c in case["cards"]]
    assert got == want
