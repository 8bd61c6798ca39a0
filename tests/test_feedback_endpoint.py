from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from cds_service.models import Feedback

from .review_support import ORDER_SIGN, accepted, call, hook_request, override

FEEDBACK_URL = f"/cds-services/{ORDER_SIGN}/feedback"
U1, U2, U3, U4, U5, U9 = (str(uuid.uuid4()) for _ in range(6))


def _feedback_rows(app):
    with app.extensions["cds"].database.session() as session:
        return list(session.scalars(select(Feedback).order_by(Feedback.id)))


def test_override_without_display_is_stored_and_linked_to_its_card(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    response = client.post(FEEDBACK_URL, json={"feedback": [override(card["uuid"], comment="PA on file")]})
    assert response.status_code == 200
    (row,) = _feedback_rows(storage_app)
    assert (row.card_uuid, row.outcome, row.override_code, row.user_comment, row.unknown_card) == (
        card["uuid"], "overridden", "prior-auth-on-file", "PA on file", False)
    assert row.override_display == "Prior authorization or coverage exception on file"  # as offered


def test_repeated_identical_feedback_is_stored_once(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    item = accepted(card["uuid"])
    for _ in range(3):
        assert client.post(FEEDBACK_URL, json={"feedback": [item]}).status_code == 200
    assert len(_feedback_rows(storage_app)) == 1
    later = dict(item, outcomeTimestamp="2026-11-20T11:00:00Z")
    assert client.post(FEEDBACK_URL, json={"feedback": [later]}).get_json()["stored"] == 1


def test_feedback_for_an_unknown_card_is_stored_and_flagged(storage_app):
    client = storage_app.test_client()
    assert client.post(FEEDBACK_URL, json={"feedback": [override(str(uuid.uuid4()))]}).status_code == 200
    (row,) = _feedback_rows(storage_app)
    assert row.unknown_card is True


def test_invalid_items_get_an_operation_outcome_naming_item_and_field(storage_app):
    client = storage_app.test_client()
    good = override(U1)
    bad_items = [
        good,
        {"card": U2, "outcome": "accepted", "outcomeTimestamp": "2026-11-20T10:00:00Z"},
        {"card": U3, "outcome": "ignored", "outcomeTimestamp": "2026-11-20T10:00:00Z"},
        {"card": U4, "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2026-11-20"},
        {"card": "not-a-uuid", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00"},
        {"card": U5, "outcome": "overridden", "overrideReason": {"reason": {"code": "x"}},
         "outcomeTimestamp": "2026-11-20T10:00:00+02:00"},
    ]
    response = client.post(FEEDBACK_URL, json={"feedback": bad_items})
    assert response.status_code == 400
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    expressions = {e for issue in body["issue"] for e in issue.get("expression", [])}
    assert expressions == {
        "feedback[1].acceptedSuggestions", "feedback[2].outcome", "feedback[3].overrideReason",
        "feedback[3].outcomeTimestamp", "feedback[4].card", "feedback[4].outcomeTimestamp",
        "feedback[5].overrideReason.reason",
    }
    assert _feedback_rows(storage_app) == []  # all or nothing


def test_feedback_for_an_unknown_service_is_404(storage_app):
    response = storage_app.test_client().post("/cds-services/nope/feedback",
                                              json={"feedback": [override(U1)]})
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_body_without_a_feedback_array_is_400(storage_app):
    client = storage_app.test_client()
    for body in ({}, {"feedback": []}, {"feedback": "x"}):
        assert client.post(FEEDBACK_URL, json=body).status_code == 400
    assert client.post(FEEDBACK_URL, data="not json", content_type="application/json").status_code == 400


def test_feedback_records_the_client_issuer_set_by_authentication(storage_app):
    from flask import g

    @storage_app.before_request
    def _fake_auth():
        g.cds_client = {"iss": "https://ehr.example.org"}

    client = storage_app.test_client()
    client.post(FEEDBACK_URL, json={"feedback": [override(U9)]})
    with storage_app.extensions["cds"].database.session() as session:
        assert session.scalar(select(func.max(Feedback.client_iss))) == "https://ehr.example.org"


def test_signed_feedback_is_accepted_and_stores_the_verified_issuer(tmp_path):
    import json

    from cds_service import create_app

    from .jwt_support import BASE, ISS, bearer, claims, ec_key, jwks, sign

    key = ec_key("fb-1", "ES384")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(key)))
    trusted = [{"iss": ISS, "jwks_file": str(tmp_path / "jwks.json")}]
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite3'}",
                      "SECRET_KEY": "s", "TRUSTED_CLIENTS": trusted})
    url = f"{BASE}{FEEDBACK_URL}"
    client = app.test_client()
    assert client.post(url, json={"feedback": [override(U1)]}).status_code == 401
    signed = client.post(url, json={"feedback": [override(U1)]}, headers=bearer(sign(key, claims(url))))
    assert signed.status_code == 200
    (row,) = _feedback_rows(app)
    assert row.client_iss == ISS


def test_an_out_of_range_timestamp_is_400_naming_the_item(storage_app):
    item = dict(override(U9), outcomeTimestamp="0001-01-01T00:01:00+03:00")
    response = storage_app.test_client().post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 400
    assert "feedback[0].outcomeTimestamp" in response.get_data(as_text=True)


def test_feedback_with_an_upper_case_card_uuid_joins_its_card(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    response = client.post(FEEDBACK_URL, json={"feedback": [override(card["uuid"].upper())]})
    assert response.status_code == 200
    (row,) = _feedback_rows(storage_app)
    assert (row.card_uuid, row.unknown_card) == (card["uuid"], False)


def _spec_validator():
    from jsonschema import Draft202012Validator

    from cds_service.http_policy import openapi_spec

    spec = openapi_spec()
    return Draft202012Validator({"$ref": "#/components/schemas/FeedbackRequest",
                                 "components": spec["components"]})


def test_timestamps_the_app_refuses_are_the_ones_the_openapi_description_refuses(storage_app):
    client = storage_app.test_client()
    validator = _spec_validator()
    cases = {"0001-01-01T00:01:00+03:00": 400, "9999-12-31T23:00:00-05:00": 400,
             "1000-01-01T00:30:00+03:00": 200, "9998-12-31T23:00:00-05:00": 200,
             "2026-11-20T10:00:00Z": 200}
    for when, status in cases.items():
        body = {"feedback": [override(str(uuid.uuid4()), when=when)]}
        assert client.post(FEEDBACK_URL, json=body).status_code == status, when
        assert validator.is_valid(body) is (status == 200), when


def test_a_comment_over_the_limit_is_400_naming_the_field(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    limit = storage_app.config["FEEDBACK_MAX_COMMENT_CHARS"]
    too_long = {"feedback": [override(card["uuid"], comment="x" * (limit + 1))]}
    response = client.post(FEEDBACK_URL, json=too_long)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback[0].overrideReason.userComment"]
    assert not _spec_validator().is_valid(too_long)
    at_limit = {"feedback": [override(card["uuid"], comment="x" * limit)]}
    assert client.post(FEEDBACK_URL, json=at_limit).status_code == 200
    assert _feedback_rows(storage_app)[0].user_comment == "x" * limit


def test_more_items_than_the_limit_is_400(storage_app):
    limit = storage_app.config["FEEDBACK_MAX_ITEMS"]
    body = {"feedback": [override(str(uuid.uuid4())) for _ in range(limit + 1)]}
    assert storage_app.test_client().post(FEEDBACK_URL, json=body).status_code == 400
    assert not _spec_validator().is_valid(body)
    assert _feedback_rows(storage_app) == []


def test_feedback_for_unknown_cards_keeps_no_free_text_and_is_capped_per_day(database_url, tmp_path):
    from cds_service import create_app

    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                      "SECRET_KEY": "s", "SPOOL_DIR": str(tmp_path), "FEEDBACK_MAX_UNKNOWN_PER_DAY": 2})
    client = app.test_client()
    sent = [override(str(uuid.uuid4()), comment="a patient's name, maybe") for _ in range(3)]
    for item in sent:
        item["overrideReason"]["reason"]["display"] = "free text from the client"
        assert client.post(FEEDBACK_URL, json={"feedback": [item]}).status_code == 200
    rows = _feedback_rows(app)
    assert [r.card_uuid for r in rows] == [i["card"] for i in sent[:2]]
    assert all(r.unknown_card and r.user_comment is None and r.override_display is None for r in rows)
    assert rows[0].override_code == "prior-auth-on-file"
    card = call(client, hook_request())[0]  # feedback on issued cards is not capped
    assert client.post(FEEDBACK_URL, json={"feedback": [override(card["uuid"], comment="ok")]}
                       ).get_json()["stored"] == 1


def test_a_body_nested_too_deeply_is_400_not_a_500(storage_app):
    deep = b'{"feedback": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = storage_app.test_client().post(FEEDBACK_URL, data=deep, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.get_data(as_text=True)


def test_feedback_is_read_whatever_its_content_type_as_hook_calls_are(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    body = json.dumps({"feedback": [accepted(card["uuid"])]})
    for content_type in ("text/plain", None):
        response = client.post(FEEDBACK_URL, data=body, content_type=content_type)
        assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("stamp", ["2026-W01-1T00:00:00Z", "2026-01-01T00:00Z", "2026-01-01T10Z",
                                   "2026-01-01T00:00:00,5Z", "2026-01-01 00:00:00Z"])
def test_a_timestamp_that_is_not_rfc_3339_is_400(storage_app, stamp):
    item = dict(override(U9), outcomeTimestamp=stamp)
    response = storage_app.test_client().post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 400 and "outcomeTimestamp" in response.get_data(as_text=True)


def test_feedback_on_another_services_card_is_feedback_on_an_unknown_card(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]  # given by order-sign
    other = "/cds-services/iv-anesthetics-order-select/feedback"
    item = override(card["uuid"], comment="PA on file")
    assert client.post(other, json={"feedback": [item]}).status_code == 200
    (row,) = _feedback_rows(storage_app)
    assert row.unknown_card is True and row.user_comment is None


def test_feedback_on_another_clients_card_is_feedback_on_an_unknown_card(storage_app):
    from flask import g

    client = storage_app.test_client()
    card = call(client, hook_request())[0]  # given with authentication off: no client

    @storage_app.before_request
    def _other_client():
        g.cds_client = {"iss": "https://other-hospital.example.org"}

    assert client.post(FEEDBACK_URL, json={"feedback": [override(card["uuid"], comment="x")]}).status_code == 200
    (row,) = _feedback_rows(storage_app)
    assert row.unknown_card is True and row.user_comment is None
