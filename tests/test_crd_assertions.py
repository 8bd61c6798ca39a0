"""Coverage assertions are kept (found-11) and can be found by id: CLI and review page."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, text

from cds_service import cli, create_app
from cds_service.crd.coverage_info import EXTENSION_URL
from cds_service.models import CoverageAssertionRecord
from cds_service.review.auth import create_reviewer

from .conftest import FIXTURES

CRD = FIXTURES / "crd"
PASSWORD = "correct horse battery"


@pytest.fixture()
def crd_app(database_url):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                      "SECRET_KEY": "test-secret"})
    create_reviewer(app.extensions["cds"].database, "claims", PASSWORD)
    return app


def _post(app, name, service="iv-anesthetics-order-sign"):
    response = app.test_client().post(f"/cds-services/{service}", data=(CRD / name).read_bytes(),
                                      content_type="application/json")
    assert response.status_code == 200
    return response.get_json()


def _ids(payload):
    return [p["valueString"] for a in payload["systemActions"] for e in a["resource"]["extension"]
            if e["url"] == EXTENSION_URL for p in e["extension"] if p["url"] == "coverage-assertion-id"]


def _rows(app):
    with app.extensions["cds"].database.session() as session:
        return session.scalars(select(CoverageAssertionRecord).order_by(CoverageAssertionRecord.id)).all()


def test_every_assertion_is_stored_with_order_coverage_policy_version_and_decision(crd_app):
    payload = _post(crd_app, "10-two-orders-two-coverages.json")
    rows = _rows(crd_app)
    assert len(rows) == 4  # two orders x two Coverages
    assert {(r.order_ref, r.coverage_ref) for r in rows} == {
        (a["resource"]["resourceType"] + "/" + a["resource"]["id"], cov)
        for a in payload["systemActions"] for cov in ("Coverage/COV1", "Coverage/COV2")}
    assert {r.assertion_id for r in rows} == set(_ids(payload))
    by_coverage = {}
    for r in rows:
        by_coverage.setdefault(r.coverage_ref, set()).add(r.assertion_id)
        assert r.policy_id == "bcbsks-iv-anesthetics" and r.policy_version == "revision 12-23-2024"
        assert r.decision_kind == "warning" and r.covered == "not-covered" and r.crd_version == "2.0"
    assert all(len(ids) == 1 for ids in by_coverage.values()) and len(set().union(*by_coverage.values())) == 2
    returned = [e for a in payload["systemActions"] for e in a["resource"]["extension"]]
    assert [r.extension for r in rows] == returned  # kept exactly as returned


def test_no_assertion_is_stored_when_none_is_given(crd_app):
    _post(crd_app, "02-ig-shape-coverage-info-false.json")
    _post(crd_app, "08-payer-without-policy.json")
    assert _rows(crd_app) == []


def test_cli_finds_an_assertion_by_id(crd_app, database_url, monkeypatch, capsys):
    assertion_id = _ids(_post(crd_app, "01-ig-shape-ketamine-depression.json"))[0]
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    assert cli.main(["assertion", assertion_id]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["assertion_id"] == assertion_id and row["covered"] == "not-covered"
    assert row["order"] == "MedicationRequest/mr-ket-mdd-13" and row["coverage"] == "Coverage/COV1"
    assert cli.main(["assertion", "no-such-id"]) == 1
    assert "no coverage assertion" in capsys.readouterr().err


def _login(client):
    html = client.get("/review/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    client.post("/review/login", data={"csrf_token": token, "username": "claims", "password": PASSWORD})


def test_review_page_finds_an_assertion_by_id(crd_app):
    assertion_id = _ids(_post(crd_app, "01-ig-shape-ketamine-depression.json"))[0]
    client = crd_app.test_client()
    response = client.get(f"/review/assertions?id={assertion_id}")
    assert response.status_code == 302 and "/review/login" in response.headers["Location"]
    _login(client)
    page = client.get(f"/review/assertions?id={assertion_id}").get_data(as_text=True)
    assert "Order MedicationRequest/mr-ket-mdd-13" in page and "Coverage/COV1" in page
    assert "not-covered (warning)" in page and "revision 12-23-2024" in page
    missing = client.get("/review/assertions?id=%3Cscript%3E").get_data(as_text=True)
    assert "No coverage assertion with id &lt;script&gt;" in missing


def test_migration_0005_creates_the_assertion_table(crd_app):
    with crd_app.extensions["cds"].database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM coverage_assertion")).scalar() == 0



@pytest.fixture(scope="module")
def answering_app(tmp_path_factory):
    """The CRD answers alone (no reviewer, one SQLite database for the module): what these
    tests pin does not depend on the database engine."""
    database = tmp_path_factory.mktemp("crd-answers") / "audit.sqlite3"
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{database}",
                       "SECRET_KEY": "test-secret"})


@pytest.mark.parametrize("name", sorted(p.name for p in CRD.glob("*.json") if p.name != "expected.json"))
def test_each_card_is_rendered_once_with_room_for_the_crd_lines(answering_app, monkeypatch, name):
    """The pipeline leaves room for what the CRD layer adds (asserts_coverage tells it ahead of
    the assertions), so the CRD layer never renders a card a second time."""
    from cds_service import card_render, pipeline
    from cds_service.crd import respond

    renders = {"pipeline": 0, "crd": 0}

    def counted(where):
        def render(*args, **kwargs):
            renders[where] += 1
            return card_render.render_card(*args, **kwargs)
        return render

    monkeypatch.setattr(pipeline, "render_card", counted("pipeline"))
    monkeypatch.setattr(respond, "render_card", counted("crd"))
    body = json.loads((CRD / name).read_bytes())
    payload = _post(answering_app, name, f"iv-anesthetics-{body['hook']}")
    assert renders["crd"] == 0
    assert renders["pipeline"] >= len(payload["cards"])


COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"


@pytest.mark.parametrize("extension", [
    5, "x", [5], ["x"], {"url": COVERAGE_INFORMATION, "extension": 5},
    [{"url": COVERAGE_INFORMATION, "extension": 5}], [{"url": COVERAGE_INFORMATION, "extension": [5]}],
])
def test_an_order_whose_extensions_cannot_be_read_is_a_400_not_a_500(answering_app, extension):
    """The CRD layer keeps the order's own extensions and replaces coverage information it finds
    there; an extension that is not an Extension object is unreadable input, not an internal error."""
    body = json.loads((CRD / "01-ig-shape-ketamine-depression.json").read_bytes())
    for entry in body["context"]["draftOrders"]["entry"]:
        if entry["resource"]["resourceType"] == "MedicationRequest":
            entry["resource"]["extension"] = extension
    response = answering_app.test_client().post("/cds-services/iv-anesthetics-order-sign", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and "extension" in outcome["issue"][0]["diagnostics"]


def test_an_order_with_other_extensions_keeps_them_next_to_the_coverage_information(answering_app):
    body = json.loads((CRD / "01-ig-shape-ketamine-depression.json").read_bytes())
    own = {"url": "http://example.org/fhir/StructureDefinition/ordering-note", "valueString": "as discussed"}
    for entry in body["context"]["draftOrders"]["entry"]:
        if entry["resource"]["resourceType"] == "MedicationRequest":
            entry["resource"]["extension"] = [own]
    response = answering_app.test_client().post("/cds-services/iv-anesthetics-order-sign", json=body)
    assert response.status_code == 200
    [action] = response.get_json()["systemActions"]
    extensions = action["resource"]["extension"]
    assert extensions[0] == own and extensions[1]["url"] == COVERAGE_INFORMATION


SIGN = "/cds-services/iv-anesthetics-order-sign"


def _ig_shape_with(change) -> dict:
    body = json.loads((CRD / "01-ig-shape-ketamine-depression.json").read_bytes())
    for entry in body["context"]["draftOrders"]["entry"]:
        if entry["resource"]["resourceType"] == "MedicationRequest":
            change(entry)
    return body


def test_an_order_without_an_id_gets_its_card_but_no_coverage_update_it_could_not_apply(answering_app):
    def without_id(entry):
        entry["resource"].pop("id")
        entry["fullUrl"] = "urn:uuid:11111111-1111-4111-8111-111111111111"

    response = answering_app.test_client().post(SIGN, json=_ig_shape_with(without_id))
    assert response.status_code == 200
    payload = response.get_json()
    assert len(payload["cards"]) == 1 and payload.get("systemActions", []) == []


def test_a_do_not_perform_order_gets_neither_a_card_nor_a_coverage_assertion(answering_app):
    def prohibited(entry):
        entry["resource"]["doNotPerform"] = True

    response = answering_app.test_client().post(SIGN, json=_ig_shape_with(prohibited))
    assert response.status_code == 200
    payload = response.get_json()
    assert payload["cards"] == [] and payload.get("systemActions", []) == []


def test_an_assertion_is_shown_with_its_time_in_utc(crd_app):
    from cds_service.crd.store import as_dict

    _post(crd_app, "10-two-orders-two-coverages.json")
    shown = as_dict(_rows(crd_app)[0])["created_at"]
    assert shown.endswith("+00:00"), shown
