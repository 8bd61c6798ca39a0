"""CRD discovery, request configuration, card topic per client, and the safety rules."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cds_service import create_app, hook_call
from cds_service.crd import respond as crd_respond
from cds_service.crd.coverage_info import EXTENSION_URL, repetition
from cds_service.crd.settings import CrdSettings, read_settings
from cds_service.crd.topic import card_topic, topic_config_problems

from .conftest import FIXTURES, load_json
from .crd_validator import TEMP
from .jwt_support import ISS, bearer, claims, ec_key, jwks, sign

CRD = FIXTURES / "crd"
IG_SHAPE = CRD / "01-ig-shape-ketamine-depression.json"
SIGN = "/cds-services/iv-anesthetics-order-sign"
EPIC_TOPIC = {"system": "urn:iv-anesthetics-cds:card-topic", "code": "offguideline",
              "display": "Off guideline"}


def test_discovery_declares_crd_version_and_configuration_options(client):
    for service in client.get("/cds-services").get_json()["services"]:
        ext = service["extension"]
        assert ext["davinci-crd.version"] == ["2.0"]
        options = {o["code"]: o for o in ext["davinci-crd.configuration-options"]}
        assert set(options) == {"coverage-info", "off-guideline", "max-cards"}
        for option in options.values():
            assert option["name"] and option["description"] and "default" in option
        assert options["max-cards"]["type"] == "integer" and options["coverage-info"]["default"] is True


@pytest.mark.parametrize("extension, expected", [
    (None, CrdSettings()),
    ({}, CrdSettings()),
    ({"davinci-crd.requestedVersion": "2.0"}, CrdSettings()),
    ({"davinci-crd.configuration": {"coverage-info": False, "off-guideline": False, "max-cards": 2}},
     CrdSettings(coverage_info=False, cards=False, max_cards=2)),
])
def test_configuration_is_honoured_and_never_required(extension, expected):
    raw = {} if extension is None else {"extension": extension}
    assert dataclasses.replace(read_settings(raw), ignored=()) == expected


@pytest.mark.parametrize("extension, ignored", [
    ({"davinci-crd.requestedVersion": "2.2"}, ("davinci-crd.requestedVersion",)),
    ({"davinci-crd.requestedVersion": 2}, ("davinci-crd.requestedVersion",)),
    ({"davinci-crd.configuration": {"cost": False, "max-cards": "5"}}, ("cost", "max-cards")),
    ({"davinci-crd.configuration": {"coverage-info": "false", "max-cards": -1}}, ("coverage-info", "max-cards")),
    ({"davinci-crd.configuration": {"max-cards": True}}, ("max-cards",)),
    ({"davinci-crd.configuration": ["coverage-info"]}, ("davinci-crd.configuration",)),
    ("not an object", ()),
])
def test_unknown_or_nonsensical_settings_are_ignored(extension, ignored):
    settings = read_settings({"extension": extension})
    assert dataclasses.replace(settings, ignored=()) == CrdSettings()
    assert settings.ignored == ignored


def test_card_topic_is_the_crd_card_type_unless_the_client_has_one():
    settings = CrdSettings()
    crd = {"system": TEMP, "code": "off-guideline", "display": "Off Guideline"}
    assert card_topic(settings, None, {}) == crd
    assert card_topic(settings, "https://other.example", {ISS: EPIC_TOPIC}) == crd
    assert card_topic(settings, ISS, {ISS: EPIC_TOPIC}) == EPIC_TOPIC
    assert card_topic(settings, ISS, {ISS: {"code": "x"}}) == crd  # not a coding: ignored
    assert topic_config_problems({ISS: {"code": "x"}}) and not topic_config_problems({ISS: EPIC_TOPIC})


def test_documented_epic_topic_code_is_alphanumeric_and_short():
    assert EPIC_TOPIC["code"].isalnum() and len(EPIC_TOPIC["code"]) <= 100


def test_verified_client_gets_its_configured_card_topic(tmp_path):
    key = ec_key("ec-1", "ES384")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(key)))
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
                      "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_file": str(tmp_path / "jwks.json")}],
                      "CARD_TOPIC_BY_ISS": {ISS: EPIC_TOPIC}})
    token = sign(key, claims(f"http://localhost{SIGN}"))
    response = app.test_client().post(SIGN, data=IG_SHAPE.read_bytes(),
                                      content_type="application/json", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["source"]["topic"] == EPIC_TOPIC


def _evaluation(client):
    """The pipeline's evaluation of the IG-shape request (before the CRD layer)."""
    from cds_service.hook_request import parse_body, validate_envelope
    from cds_service.pipeline import evaluate

    app = client.application
    body = IG_SHAPE.read_bytes()
    request = validate_envelope(parse_body(body), expected_hook="order-sign")
    state = app.extensions["cds"]
    with app.app_context():
        evaluation = evaluate(request, body, state.knowledge, state.card_text,
                              app.config["DEFAULT_POLICY_ID"], state.data_source_factory)
    return request, evaluation


def test_unknown_decision_kind_asserts_nothing(client):
    _, evaluation = _evaluation(client)
    decision = dataclasses.replace(evaluation.decisions[0], kind="payer_without_policy")
    assert repetition(decision, "Coverage/COV1", "id-1", "2026-12-01") is None
    request, _ = _evaluation(client)
    body, _, assertions = crd_respond.build(
        request, dataclasses.replace(evaluation, decisions=[decision]), CrdSettings(),
        {"system": TEMP, "code": "off-guideline"}, "2026-12-01", lambda: "id-1")
    assert "systemActions" not in body and assertions == []
    assert len(body["cards"]) == 1  # the card still comes


def test_an_assertion_that_cannot_be_kept_is_not_given(client, monkeypatch):
    def broken(*args, **kwargs):
        def write(connection):
            raise RuntimeError("database down")
        return write

    monkeypatch.setattr(hook_call, "assertion_writer", broken)
    recorded_before = _audit_rows(client)
    response = client.post(SIGN, data=IG_SHAPE.read_bytes(), content_type="application/json")
    payload = response.get_json()
    assert response.status_code == 200 and "systemActions" not in payload
    assert len(payload["cards"]) == 1 and "coverage-assertion-id" not in payload["cards"][0]["detail"]
    assert "Also recorded on the order" not in payload["cards"][0]["detail"]
    assert _audit_rows(client) == recorded_before + 1  # the answer given is the one recorded


def _audit_rows(client) -> int:
    from sqlalchemy import func, select

    from cds_service.models import HookCallRecord

    with client.application.extensions["cds"].database.session() as session:
        return session.scalar(select(func.count()).select_from(HookCallRecord))


def test_existing_coverage_information_for_the_same_coverage_is_replaced_not_duplicated(client):
    request = load_json(IG_SHAPE)
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    order["extension"] = [
        {"url": EXTENSION_URL, "extension": [
            {"url": "coverage", "valueReference": {"reference": "Coverage/COV1"}},
            {"url": "covered", "valueCode": "covered"}, {"url": "pa-needed", "valueCode": "no-auth"},
            {"url": "date", "valueDate": "2026-01-01"},
            {"url": "coverage-assertion-id", "valueString": "old"}]},
        {"url": "http://example.org/other-extension", "valueString": "kept"},
    ]
    payload = client.post(SIGN, json=request).get_json()
    extensions = payload["systemActions"][0]["resource"]["extension"]
    assert extensions[0] == {"url": "http://example.org/other-extension", "valueString": "kept"}
    assert [e["url"] for e in extensions[1:]] == [EXTENSION_URL]
    assert extensions[1]["extension"][1] == {"url": "covered", "valueCode": "not-covered"}
