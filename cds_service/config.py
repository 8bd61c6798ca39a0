"""Configuration defaults.

Every key can be overridden by a mapping passed to ``create_app(config)`` or by an
environment variable ``CDS_<KEY>`` (values are parsed as JSON when they look like JSON,
see :meth:`flask.Config.from_prefixed_env`).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, object] = {
    # Knowledge: payer policies, value sets, evidence and card text.
    "CARDS_DIR": str(REPO_ROOT / "cards"),
    # Policy applied when no Coverage in the request matches a payer in cards/policies.
    "DEFAULT_POLICY_ID": "bcbsmn-ii-271",
    # Largest request body accepted (bytes); larger bodies get 413.
    "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,
    # Public base URL of the service (scheme://host[:port][/prefix]) used for absolute
    # links and JWT audience checks behind a proxy. Empty: derived from the request.
    "PUBLIC_BASE_URL": "",
    # FHIR-server access for data the request does not carry (docs/data-access.md).
    # Seconds allowed for one HTTP request to fhirServer (connect, and each read).
    "FHIR_REQUEST_TIMEOUT": 0.8,
    # Seconds allowed for all FHIR access of one hook call; the hook answers with what it has then.
    "FHIR_TOTAL_DEADLINE": 1.5,
    # Pages of one search followed via `next` links (the first page included).
    "FHIR_MAX_PAGES": 5,
    # _count sent with searches.
    "FHIR_PAGE_SIZE": 50,
    # Query fhirServer without a fhirAuthorization token? loopback (only http(s) servers on
    # 127.0.0.0/8, ::1 or localhost, e.g. a local sandbox) | always | never.
    "FHIR_ALLOW_UNAUTHENTICATED": "loopback",
    # Threads of the process-wide pool that runs independent fetches in parallel.
    "FHIR_MAX_WORKERS": 8,
}
