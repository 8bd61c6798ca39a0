"""The fast lane in front of Flask answers hook calls exactly as the Flask view would.

Every request fixture is sent twice, once through the lane (the app as served) and once
straight to Flask behind it, and the two answers must match in status, headers and body
(card UUIDs and assertion ids, random by design, are masked). The lane must also really be
used for the calls it is for, and never verify a token twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from cds_service import create_app
from cds_service.fast_lane import HookFastLane

from .conftest import FIXTURES
from .jwt_support import BASE, ISS, bearer, claims, ec_key, jwks, sign

SIGN = "/cds-services/iv-anesthetics-order-sign"
SELECT = "/cds-services/iv-anesthetics-order-select"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REQUEST_FILES = sorted((FIXTURES / "hook-requests").glob("*.json")) + sorted((FIXTURES / "crd").glob("*.json"))
KEY = ec_key("lane-1", "ES384")


def _path_for(raw: bytes) -> str:
    try:
        return SELECT if json.loads(raw).get("hook") == "order-select" else SIGN
    except (ValueError, AttributeError):
        return SIGN


def _call(wsgi, path: str, body: bytes, **environ_overrides) -> tuple[str, list, bytes]:
    headers = environ_overrides.pop("headers", {})
    builder = EnvironBuilder(path=path, method=environ_overrides.pop("method", "POST"), data=body,
                             headers={"Content-Type": "application/json", **headers},
                             base_url=environ_overrides.pop("base_url", "http://localhost"))
    environ = builder.get_environ()
    environ.update(environ_overrides)
    app_iter, status, response_headers = run_wsgi_app(wsgi, environ)
    data = b"".join(app_iter)
    if hasattr(app_iter, "close"):
        app_iter.close()
    return status, sorted(response_headers), UUID.sub(b"<uuid>", data)


def _lane(app) -> HookFastLane:
    assert isinstance(app.wsgi_app, HookFastLane)
    return app.wsgi_app


@pytest.fixture(scope="module")
def audited_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lane")
    return create_app({"AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{folder / 'audit.sqlite3'}",
                       "SECRET_KEY": "lane-test"})


@pytest.mark.parametrize("request_file", REQUEST_FILES, ids=lambda p: p.parent.name + "/" + p.stem)
def test_the_lane_answers_every_fixture_as_flask_does(audited_app, request_file: Path):
    raw = request_file.read_bytes()
    path = _path_for(raw)
    lane = _lane(audited_app)
    through_lane = _call(lane, path, raw)
    straight_to_flask = _call(lane.flask_wsgi, path, raw)
    assert through_lane == straight_to_flask


@pytest.mark.parametrize("variant", [
    {"base_url": "https://localhost"},  # HSTS on a secure request
    {"headers": {"Origin": "https://sandbox.cds-hooks.org"}},  # a browser: Flask (flask-cors)
    {"method": "PUT"},
    {"CONTENT_LENGTH": ""},  # no length (chunked): Flask's rules for streamed bodies
    {"CONTENT_LENGTH": "12x"},
    {"CONTENT_LENGTH": "\u00b2"},  # a digit to str.isdigit, not to int()
    {"HTTP_TRANSFER_ENCODING": "chunked"},
    {"wsgi.url_scheme": "wss"},
], ids=["https", "origin", "put", "no-length", "bad-length", "superscript-length", "chunked", "wss"])
def test_the_lane_matches_flask_on_schemes_methods_origins_and_lengths(variant):
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    lane = _lane(app)
    raw = (FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json").read_bytes()
    assert _call(lane, SIGN, raw, **dict(variant)) == _call(lane.flask_wsgi, SIGN, raw, **dict(variant))


def _counting_flask_calls(lane: HookFastLane) -> list[int]:
    calls: list[int] = []
    flask_wsgi = lane.flask_wsgi
    lane.flask_wsgi = lambda environ, start_response: calls.append(1) or flask_wsgi(environ, start_response)
    return calls


def test_with_cors_origins_configured_every_call_goes_to_flask_cors():
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False,
                      "CORS_ORIGINS": "https://sandbox.cds-hooks.org"})
    calls = _counting_flask_calls(_lane(app))
    raw = (FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json").read_bytes()
    status, headers, _body = _call(_lane(app), SIGN, raw)
    assert status == "200 OK" and calls == [1]
    assert ("Vary", "Origin") in headers


def test_a_body_shorter_than_its_content_length_gets_flasks_answer():
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    lane = _lane(app)
    raw = (FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json").read_bytes()
    stated = {"CONTENT_LENGTH": str(len(raw) + 10)}
    through_lane = _call(lane, SIGN, raw, **stated)
    assert through_lane == _call(lane.flask_wsgi, SIGN, raw, **stated)
    assert through_lane[0].startswith("400")


def test_a_body_limit_changed_after_start_up_applies_to_the_lane():
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    app.config["MAX_CONTENT_LENGTH"] = 100
    raw = (FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json").read_bytes()
    assert _call(_lane(app), SIGN, raw)[0].startswith("413")


def test_bodies_over_the_limit_are_refused_the_same_way():
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False, "MAX_CONTENT_LENGTH": 1000})
    lane = _lane(app)
    raw = (FIXTURES / "hook-requests" / "13-depression-ketamine-f33.json").read_bytes()
    assert len(raw) > 1000
    through_lane = _call(lane, SIGN, raw)
    assert through_lane[0].startswith("413")
    assert through_lane == _call(lane.flask_wsgi, SIGN, raw)


def test_an_out_of_scope_call_and_a_card_are_answered_by_the_lane_without_flask(audited_app):
    lane = _lane(audited_app)
    flask_wsgi = lane.flask_wsgi
    calls = _counting_flask_calls(lane)
    try:
        quiet = _call(lane, SIGN, (FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json").read_bytes())
        card = _call(lane, SIGN, (FIXTURES / "hook-requests" / "13-depression-ketamine-f33.json").read_bytes())
        broken = _call(lane, SIGN, b'{"hook": "order-sign"}')
    finally:
        lane.flask_wsgi = flask_wsgi
    assert quiet[0] == "200 OK" and quiet[2] == b'{"cards":[]}\n'
    assert card[0] == "200 OK" and b"Experimental/investigational" in card[2]
    assert broken[0].startswith("400") and b"OperationOutcome" in broken[2]
    assert calls == [1]  # only the bad request went on to Flask, for its error answer


@pytest.fixture()
def auth_app(tmp_path):
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(KEY)))
    return create_app({"AUTH_ENABLED": True, "AUDIT_ENABLED": False, "PUBLIC_BASE_URL": BASE,
                       "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_file": str(keys)}]})


@pytest.mark.parametrize("request_file", [
    FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json",
    FIXTURES / "hook-requests" / "01-crps-ketamine-reasoncode.json",
], ids=lambda p: p.stem)
@pytest.mark.parametrize("token", ["fresh", "missing", "wrong-audience"])
def test_with_auth_on_the_lane_verifies_and_refuses_as_flask_does(auth_app, request_file, token):
    lane = _lane(auth_app)
    raw = request_file.read_bytes()

    def headers() -> dict:  # a fresh token (its own jti) for each of the two calls
        if token == "missing":
            return {}
        audience = f"{BASE}{SIGN}" if token == "fresh" else "https://elsewhere.example.org/cds-services"
        return bearer(sign(KEY, claims(audience)))

    through_lane = _call(lane, SIGN, raw, headers=headers())
    assert through_lane[0] == ("200 OK" if token == "fresh" else "401 UNAUTHORIZED")
    assert through_lane == _call(lane.flask_wsgi, SIGN, raw, headers=headers())


def test_a_token_the_lane_verified_is_not_verified_again_when_flask_words_an_error(auth_app):
    """A valid token on a bad request: 400 for the request, not 401 for a 'replayed' jti."""
    lane = _lane(auth_app)
    status, _headers, body = _call(lane, SIGN, b'{"hook": "order-sign"}',
                                   headers=bearer(sign(KEY, claims(f"{BASE}{SIGN}"))))
    assert status.startswith("400"), body
    assert b"OperationOutcome" in body
