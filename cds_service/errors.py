"""FHIR OperationOutcome error bodies for every non-2xx answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) by HTTP status.
_ISSUE_CODE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}


@dataclass(frozen=True)
class Issue:
    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def as_fhir(self) -> dict:
        issue: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass
class ApiError(Exception):
    """An error answered with ``status`` and an OperationOutcome body."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def single(
        cls, status: int, diagnostics: str, *, expression: tuple[str, ...] = (), code: str = ""
    ) -> ApiError:
        issue_code = code or _ISSUE_CODE_BY_STATUS.get(status, "processing")
        return cls(status, [Issue(diagnostics, issue_code, expression=expression)])

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


def outcome_response(status: int, issues: list[Issue], headers: dict | None = None) -> Response:
    response = jsonify(operation_outcome(issues))
    response.status_code = status
    response.mimetype = "application/fhir+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return outcome_response(error.status, error.issues, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = _ISSUE_CODE_BY_STATUS.get(status, "processing")
        message = error.description or error.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body is larger than the limit of {limit} bytes."
        response = outcome_response(status, [Issue(message, code)])
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Log the type and a traceback for operators; the client never sees internals.
        log.exception("unhandled error: %s", type(error).__name__)
        return outcome_response(
            500, [Issue("Internal error while processing the request.", "exception")]
        )
