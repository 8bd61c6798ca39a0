"""CORS for browser clients, body limits, wrong methods and security headers."""

from __future__ import annotations

import io

import pytest

from cds_service import create_app

SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SERVICE = "/cds-services/iv-anesthetics-order-sign"
PREFLIGHT_PATHS = ["/cds-services", SERVICE, f"{SERVICE}/feedback"]


@pytest.fixture(scope="module")
def cors_app():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "CORS_ORIGINS": [SANDBOX_ORIGIN]})

    # Stands in for the feedback blueprint that lands separately.
    @app.post("/cds-services/<service_id>/feedback")
    def _feedback(service_id: str):
        return {}

    return app


def preflight(client, path, origin=SANDBOX_ORIGIN, method="POST"):
    return client.options(path, headers={
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    })


@pytest.mark.parametrize("path", PREFLIGHT_PATHS)
def test_preflight_from_an_allowed_origin(cors_app, path):
    response = preflight(cors_app.test_client(), path)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert {"GET", "POST", "OPTIONS"} <= {m.strip() for m in
                                          response.headers["Access-Control-Allow-Methods"].split(",")}
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_with_auth_on_needs_no_token():
    app = create_app({"TESTING": True, "CORS_ORIGINS": SANDBOX_ORIGIN})  # comma-separated form
    response = preflight(app.test_client(), "/cds-services", method="GET")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    # ... and the actual 401 still carries CORS headers, so the browser can show it.
    denied = app.test_client().get("/cds-services", headers={"Origin": SANDBOX_ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN


def test_other_origins_get_no_cors_headers(cors_app):
    response = preflight(cors_app.test_client(), "/cds-services", origin="https://evil.example.org")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_cors_headers_by_default(client):
    response = preflight(client, "/cds-services")
    assert not [h for h, _ in response.headers if h.lower().startswith("access-control-")]
    response = client.get("/cds-services", headers={"Origin": SANDBOX_ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_simple_request_from_allowed_origin(cors_app):
    response = cors_app.test_client().get("/cds-services", headers={"Origin": SANDBOX_ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    assert "Origin" in response.headers.get("Vary", "")


# --- limits and errors ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_app():
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "MAX_CONTENT_LENGTH": 1000})


def assert_outcome(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/fhir+json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_body_over_the_limit_is_413(small_app):
    body = b'{"hook": "order-sign", "padding": "' + b"x" * 2000 + b'"}'
    response = small_app.test_client().post(SERVICE, data=body, content_type="application/json")
    assert_outcome(response, 413)


def test_chunked_body_over_the_limit_is_413(small_app):
    """No Content-Length: Werkzeug's limited stream stops reading at the limit."""
    body = b'{"hook": "order-sign", "padding": "' + b"x" * 5000 + b'"}'
    response = small_app.test_client().post(
        SERVICE, input_stream=io.BytesIO(body), content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_outcome(response, 413)


def test_chunked_body_under_the_limit_is_read(small_app):
    response = small_app.test_client().post(
        SERVICE, input_stream=io.BytesIO(b'{"hook": "order-sign"}'), content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    body = assert_outcome(response, 400)  # read and validated, not refused for size
    assert "hookInstance" in str(body)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("put", "/cds-services", {"GET", "HEAD", "OPTIONS"}),
    ("delete", SERVICE, {"POST", "OPTIONS"}),
    ("get", SERVICE, {"POST", "OPTIONS"}),
    ("post", "/openapi.json", {"GET", "HEAD", "OPTIONS"}),
])
def test_wrong_method_is_405_with_allow(client, method, path, allow):
    response = getattr(client, method)(path)
    assert_outcome(response, 405)
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allow


def test_unknown_path_is_404_outcome(client):
    assert_outcome(client.get("/nope"), 404)


def test_unexpected_error_is_500_outcome_without_internals(caplog):
    app = create_app({"TESTING": False, "AUTH_ENABLED": False})

    @app.get("/boom")
    def _boom():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    body = assert_outcome(response, 500)
    assert "secret internal detail" not in str(body)


# --- security headers -----------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("get", "/cds-services"), ("post", SERVICE), ("get", "/cds-services/x"), ("get", "/openapi.json"),
])
def test_api_responses_carry_security_headers(client, method, path):
    response = getattr(client, method)(path, json={} if method == "post" else None)
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_html_pages_keep_their_own_csp():
    """Server-rendered pages (another blueprint) are not given the JSON-only CSP."""
    app = create_app({"TESTING": True, "AUTH_ENABLED": False})

    @app.get("/review/page")
    def _page():
        return "<form method=post><style>p{}</style></form>"

    @app.get("/review/with-csp")
    def _page_csp():
        return "<p>x</p>", 200, {"Content-Security-Policy": "default-src 'self'"}

    http = app.test_client()
    page = http.get("/review/page")
    assert "Content-Security-Policy" not in page.headers
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert http.get("/review/with-csp").headers["Content-Security-Policy"] == "default-src 'self'"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/cds-services").headers
    secure = client.get("/cds-services", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
