"""Cross-cutting HTTP behaviour: CORS, security headers and the OpenAPI document."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from .config import as_str_list
from .errors import ApiError
from .knowledge import SCHEMA_DIR

CORS_RESOURCES = [r"/cds-services", r"/cds-services/*"]
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type"]
CORS_METHODS = ["GET", "POST", "OPTIONS"]

# For JSON answers only: they never load anything, so nothing may be loaded or framed.
# HTML pages (e.g. /review) keep whatever policy their own blueprint sets.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
NO_STORE_PREFIXES = ("/cds-services", "/openapi.json")
NO_SESSION_PREFIXES = ("/cds-services",)  # EHR-facing JSON endpoints: no review session

# Content-Encoding values that leave the body as it is ("utf-8" is a charset some clients send
# there by mistake: the body is not encoded by it). Any other is refused with a 415 (routes.py).
IDENTITY_ENCODINGS = frozenset({"", "identity", "utf-8", "utf8"})


def is_identity_encoding(value: str | None) -> bool:
    return value is None or value.strip().lower() in IDENTITY_ENCODINGS


def require_identity_encoding(value: str | None) -> None:
    """A 415 for a compressed body (``Content-Encoding``): read as JSON it would be garbage."""
    if not is_identity_encoding(value):
        raise ApiError.single(415, "A compressed request body (Content-Encoding) is not supported; send "
                                   "it uncompressed (JSON in UTF-8).", code="not-supported")


openapi_bp = Blueprint("openapi", __name__)


@cache
def _openapi_document() -> str:
    return (SCHEMA_DIR / "openapi.json").read_text(encoding="utf-8")


@openapi_bp.get("/openapi.json")
def openapi() -> Response:
    return current_app.response_class(_openapi_document(), mimetype="application/json")


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI description as a dict (for tests and tooling)."""
    return json.loads(_openapi_document())


def enforce_streamed_body_limit() -> None:
    """413 for a body without Content-Length (chunked) that is longer than MAX_CONTENT_LENGTH.

    Werkzeug stops such a stream at the limit and ``get_data()`` then returns the first
    MAX_CONTENT_LENGTH bytes without complaint; one more read is what raises the 413. The
    body is cached so the view's ``get_data()`` sees the same bytes. (A body of exactly the
    limit cannot be told apart from a longer one and is refused too.)
    """
    if (request.content_length is None and request.method in ("POST", "PUT", "PATCH")
            and request.environ.get("wsgi.input_terminated")
            and current_app.config.get("MAX_CONTENT_LENGTH")):
        request.get_data(cache=True)
        request.stream.read(1)


SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("X-Frame-Options", "DENY"))
HSTS = ("Strict-Transport-Security", "max-age=31536000")  # on answers to secure requests


def security_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
    if response.mimetype and response.mimetype.endswith("json"):
        headers.setdefault("Content-Security-Policy", JSON_CSP)
    if request.path.startswith(NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
    if current_app.config["CORS_ORIGINS"] and request.path.startswith("/cds-services"):
        response.vary.add("Origin")  # the CORS answer depends on the Origin header
    if request.is_secure:
        headers.setdefault(*HSTS)
    return response


class NoSessionForHooks(SecureCookieSessionInterface):
    """The signed-cookie session of the review pages, not opened for the CDS Hooks endpoints.

    EHRs never send the review session cookie, and the hook endpoints never read or write a
    session; opening one anyway costs a signing serializer per call on the common path. Those
    paths get Flask's null session (empty, read-only; it sets no cookie and adds no header).
    """

    def open_session(self, app: Flask, request: Any) -> SessionMixin | None:
        if request.path.startswith(NO_SESSION_PREFIXES):
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_http(app: Flask) -> None:
    app.session_interface = NoSessionForHooks()
    origins = as_str_list(app.config["CORS_ORIGINS"], "CORS_ORIGINS")
    app.config["CORS_ORIGINS"] = origins
    if origins:  # no origins configured: no CORS headers at all (and flask-cors is not imported)
        from flask_cors import CORS

        CORS(app, resources={path: {} for path in CORS_RESOURCES}, origins=origins,
             allow_headers=CORS_ALLOW_HEADERS, methods=CORS_METHODS,
             supports_credentials=False, max_age=600, vary_header=True)
    app.before_request(enforce_streamed_body_limit)
    app.after_request(security_headers)
    app.register_blueprint(openapi_bp)
