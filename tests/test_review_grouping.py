"""Issue 8 §8: one alert per order on the review page, every call still in the audit trail."""

from __future__ import annotations

import csv
import io
import re

import pytest
from alembic import command
from sqlalchemy import func, select, text

from cds_service import create_app
from cds_service.db import Database, alembic_config
from cds_service.models import Alert, HookCallRecord
from cds_service.review.auth import create_reviewer

from .review_support import ORDER_SELECT, order_select_request, override, select_call

PASSWORD = "correct horse battery"


@pytest.fixture()
def review_app(database_url):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                      "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": False})
    create_reviewer(app.extensions["cds"].database, "pharm", PASSWORD)
    return app


def _signed_in(app):
    client = app.test_client()
    assert client.post("/review/login", data={"username": "pharm", "password": PASSWORD}).status_code == 302
    return client


def _csv(client, query: str = "") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(client.get(f"/review/alerts.csv{query}").get_data(as_text=True))))


def _rows(client, query: str = "") -> list[str]:
    body = client.get(f"/review/{query}").get_data(as_text=True).split("<tbody>")[1].split("</tbody>")[0]
    return [row for row in body.split("<tr>")[1:] if "No alerts match" not in row]


def _three_calls(client, order_id: str = "mr-form", **kw) -> list[dict]:
    return [select_call(client, order_select_request(order_id, **kw))[0] for _ in range(3)]


def test_three_order_select_calls_for_one_order_are_one_alert_with_three_calls_and_the_latest_card(review_app):
    cards = _three_calls(review_app.test_client())
    assert len({c["uuid"] for c in cards}) == 3  # card uuids stay unique per call
    with review_app.extensions["cds"].database.session() as session:  # the audit trail keeps every call
        assert session.scalar(select(func.count()).select_from(HookCallRecord)) == 3
        assert session.scalar(select(func.count()).select_from(Alert)) == 3
    client = _signed_in(review_app)
    [row] = _rows(client)
    assert re.search(r'<td class="calls">3<br>', row)
    [exported] = _csv(client)
    assert exported["calls_grouped"] == "3" and exported["latest_card_uuid"] == cards[-1]["uuid"]
    assert exported["first_seen_utc"] <= exported["last_seen_utc"]
    link = re.search(r'href="(/review/alerts/\d+)"', row).group(1)
    detail = client.get(link).get_data(as_text=True)
    assert all(c["uuid"] in detail for c in cards) and "Calls</th><td>3 (first" in detail


def test_a_second_order_another_patient_or_another_decision_is_another_alert(review_app):
    client = review_app.test_client()
    _three_calls(client, "mr-a")
    select_call(client, order_select_request("mr-b"))                  # a second order
    select_call(client, order_select_request("mr-a", patient="pat2"))  # same order id, other patient
    select_call(client, order_select_request("mr-a", icd10="F32.9"))   # same order, other decision
    reviewer = _signed_in(review_app)
    exported = _csv(reviewer)
    assert sorted(int(r["calls_grouped"]) for r in exported) == [1, 1, 1, 3]
    assert len(_rows(reviewer)) == 4
    assert "4 alerts;" in reviewer.get("/review/summary").get_data(as_text=True)


def test_feedback_on_the_first_calls_card_shows_on_the_grouped_alert(review_app):
    client = review_app.test_client()
    first, _, _ = _three_calls(client)
    feedback = {"feedback": [override(first["uuid"], comment="PA on file since Monday")]}
    assert client.post(f"/cds-services/{ORDER_SELECT}/feedback", json=feedback).status_code == 200
    reviewer = _signed_in(review_app)
    [row] = _rows(reviewer, "?outcome=overridden")
    assert "overridden" in row and _rows(reviewer, "?outcome=none") == []
    [exported] = _csv(reviewer)
    assert exported["outcome_any_call"] == "overridden" and exported["latest_card_uuid"] != first["uuid"]
    detail = reviewer.get(re.search(r'href="(/review/alerts/\d+)"', row).group(1)).get_data(as_text=True)
    assert "PA on file since Monday" in detail
    summary = reviewer.get("/review/summary").get_data(as_text=True)
    assert "1 alerts; 1 with feedback; 1 overridden" in summary


def test_disposition_applies_to_the_group_and_survives_a_later_call(review_app):
    client = review_app.test_client()
    _three_calls(client)
    reviewer = _signed_in(review_app)
    link = re.search(r'href="(/review/alerts/\d+)"', _rows(reviewer)[0]).group(1)
    saved = reviewer.post(link, data={"disposition": "follow-up", "note": "call Dr X"}, follow_redirects=True)
    assert "Disposition saved" in saved.get_data(as_text=True)
    select_call(client, order_select_request("mr-form"))  # the prescriber edits the form again
    [exported] = _csv(reviewer)
    assert (exported["calls_grouped"], exported["disposition"], exported["disposition_note"]) == (
        "4", "follow-up", "call Dr X")
    [row] = _rows(reviewer)
    assert "follow-up" in row
    newest = re.search(r'href="(/review/alerts/\d+)"', row).group(1)
    assert newest != link and "call Dr X" in reviewer.get(newest).get_data(as_text=True)
    assert "call Dr X" in reviewer.get(link).get_data(as_text=True)  # an older call's link shows the group


def test_migration_backfills_the_group_key_of_alerts_recorded_before_it(database_url):
    database = Database(database_url)
    cfg = alembic_config(database_url)
    with database.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0001")
    values = {"order_id": "MedicationRequest/mr1", "drug": "ketamine", "policy_id": "bcbsmn-ii-271",
              "policy_section": None, "indication_family": "crps", "decision_kind": "warning"}
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO hook_call (id, recorded_at, hook_instance, service_id, hook, patient_id, order_ids,"
            " card_count, latency_ms) VALUES (1, '2026-11-01 10:00:00', 'h1', 's', 'order-select', 'p1',"
            " '[]', 1, 1.0)"))
        for n in (1, 2):
            connection.execute(text(
                "INSERT INTO alert (id, hook_call_id, created_at, card_uuid, order_id, drug, route,"
                " indication_codes, indication_family, policy_id, policy_section, decision_kind, summary,"
                " indicator, card) VALUES (:id, 1, '2026-11-01 10:00:00', :uuid, :order_id, :drug, 'IV',"
                " '[]', :indication_family, :policy_id, :policy_section, :decision_kind, 's', 'warning',"
                " '{}')"), {"id": n, "uuid": f"card-{n}", **values})
    database.upgrade()
    with database.session() as session:
        keys = set(session.scalars(select(Alert.group_key)))
    assert keys == {Alert.key_for(**values)}


# --- whose feedback, whose alert (review-page hunt, 2026-12-07) -------------------------------

from flask import g  # noqa: E402

from .review_support import ORDER_SIGN, accepted, hook_request  # noqa: E402

SIGN_FEEDBACK = f"/cds-services/{ORDER_SIGN}/feedback"


def _as_client(app):
    """A test client whose calls come from the JWT issuer in ``who['iss']`` (authentication off)."""
    who = {"iss": None}

    @app.before_request
    def _client():
        if who["iss"]:
            g.cds_client = {"iss": who["iss"]}

    return app.test_client(), who


def _sign(client, patient="pat1", order_id="mr-1") -> dict:
    body = hook_request("G90.511", patient=patient)
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = order_id
    # An Origin header takes the Flask path, where the issuer set above applies.
    response = client.post(f"/cds-services/{ORDER_SIGN}", json=body, headers={"Origin": "http://ehr"})
    return response.get_json()["cards"][0]


def test_feedback_from_another_client_naming_the_card_does_not_set_the_alerts_outcome(review_app):
    client, who = _as_client(review_app)
    who["iss"] = "https://hospital-a.example.org"
    card = _sign(client)
    assert client.post(SIGN_FEEDBACK, json={"feedback": [accepted(card["uuid"], when="2026-11-20T10:00:00Z")]}
                       ).status_code == 200
    who["iss"] = "https://other-hospital.example.org"
    late = override(card["uuid"], comment="not ours", when="2026-11-21T10:00:00Z")
    assert client.post(SIGN_FEEDBACK, json={"feedback": [late]}).status_code == 200
    reviewer = _signed_in(review_app)
    [exported] = _csv(reviewer)
    assert exported["outcome_any_call"] == "accepted"
    detail = reviewer.get(f"/review/alerts/{_alert_id(review_app)}").get_data(as_text=True)
    assert "not ours" not in detail and "hospital-a.example.org" in detail


def test_two_clients_calls_for_the_same_patient_and_order_ids_are_two_alerts(review_app):
    client, who = _as_client(review_app)
    for iss in ("https://hospital-a.example.org", "https://hospital-b.example.org"):
        who["iss"] = iss
        _sign(client)
    reviewer = _signed_in(review_app)
    assert [row["calls_grouped"] for row in _csv(reviewer)] == ["1", "1"]


def _alert_id(app) -> int:
    with app.extensions["cds"].database.session() as session:
        return session.scalar(select(func.min(Alert.id)))
