"""The fast lane: hook calls answered without Flask's per-request machinery.

Most order-sign calls are for other drugs and are answered ``{"cards": []}`` after a scan of
the raw body; for them Flask's request and response objects, URL routing, request context and
before/after hooks cost more than the service's own work. This WSGI middleware sits in front of
the Flask app and answers a ``POST /cds-services/<id>`` itself when it can do so exactly as
Flask would: it verifies the token with the same function (:func:`.auth.verified_client`),
computes the body with the same function as the Flask view (:func:`.hook_call.answer_hook_call`)
and sends the same status, headers and bytes (``tests/test_fast_lane.py`` holds the two to that
on every request fixture).

Anything else goes to Flask untouched: other paths and methods, browser calls (an ``Origin``
header, or any call when ``CORS_ORIGINS`` is configured: CORS is flask-cors's), a compressed
body (``Content-Encoding``: Flask answers 415), a body
without a valid ``Content-Length`` or over ``MAX_CONTENT_LENGTH``, a scheme other than http(s),
debug mode. A call the
lane has started but cannot answer with a 200 (bad input, a refused token, an unexpected
error) also goes to Flask, with the body it read and the outcome it reached in the WSGI
environ (``FAST_LANE_CLIENT`` / ``FAST_LANE_FAILURE``), so Flask's error handlers word the
answer and nothing is verified, fetched or recorded twice.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from .http_policy import HSTS, JSON_CSP, SECURITY_HEADERS, is_identity_encoding
from .services import SERVICES

FAST_LANE_CLIENT = "cds_service.fast_lane.client"  # the verified client (auth on)
FAST_LANE_FAILURE = "cds_service.fast_lane.failure"  # the exception the call ended with

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]


class HookFastLane:
    def __init__(self, flask_app: Any, flask_wsgi: WsgiApp) -> None:
        from .auth import verified_client
        from .hook_call import answer_hook_call

        self._verified_client, self._answer_hook_call = verified_client, answer_hook_call
        self.flask_wsgi = flask_wsgi  # the app behind the lane (Flask's own wsgi_app)
        self._app = flask_app
        self._config = flask_app.config
        self._paths = {f"/cds-services/{service_id}": s for service_id, s in SERVICES.items()}
        self._verifier = flask_app.extensions.get("cds_auth") if self._config["AUTH_ENABLED"] else None
        # With CORS origins configured (a browser client such as the sandbox), flask-cors decides
        # the CORS headers of every answer, with or without an Origin header: all go to Flask.
        self._enabled = not self._config["CORS_ORIGINS"]
        # The headers security_headers() (http_policy) gives a JSON answer on /cds-services.
        self._headers = [("Content-Type", "application/json"), *SECURITY_HEADERS,
                         ("Content-Security-Policy", JSON_CSP), ("Cache-Control", "no-store")]

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        service = self._paths.get(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        length = _content_length(environ) if service is not None else None
        max_length = self._config["MAX_CONTENT_LENGTH"]
        scheme = environ.get("wsgi.url_scheme")
        if (service is None or length is None or not self._enabled or "HTTP_ORIGIN" in environ
                or not is_identity_encoding(environ.get("HTTP_CONTENT_ENCODING"))
                or self._app.debug or (max_length is not None and length > max_length)
                or scheme not in ("http", "https")):
            return self.flask_wsgi(environ, start_response)
        client = None
        try:
            body = environ["wsgi.input"].read(length) if length else b""
        except Exception as exc:
            return self._to_flask(environ, start_response, b"", None, exc)
        if len(body) != length:  # the client went away mid-body: Flask reads the same bytes
            environ["wsgi.input"] = io.BytesIO(body)
            return self.flask_wsgi(environ, start_response)
        try:
            if self._verifier is not None:
                client = self._verified_client(environ.get("HTTP_AUTHORIZATION", ""), environ["PATH_INFO"],
                                               self._verifier)
            answer = self._answer_hook_call(service, body, self._app.extensions["cds"], self._config, client)
            payload = (self._app.json.dumps(answer, separators=(",", ":")) + "\n").encode()
        except Exception as exc:  # Flask words it (errors.py), from the outcome reached here
            return self._to_flask(environ, start_response, body, client, exc)
        headers = [*self._headers, ("Content-Length", str(len(payload)))]
        if scheme == "https":
            headers.append(HSTS)
        start_response("200 OK", headers)
        return [payload]

    def _to_flask(self, environ: dict, start_response: StartResponse, body: bytes,
                  client: dict | None, failure: BaseException) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        environ[FAST_LANE_FAILURE] = failure
        if client is not None:
            environ[FAST_LANE_CLIENT] = client
        return self.flask_wsgi(environ, start_response)


def _content_length(environ: dict) -> int | None:
    """The body's length when the request states it plainly, else None (Flask's rules apply:
    no length, a malformed one, or any Transfer-Encoding)."""
    value = environ.get("CONTENT_LENGTH")
    if not value or not (value.isascii() and value.isdigit()) or environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    return int(value)
