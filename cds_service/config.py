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
    # --- Authentication of CDS clients (JWT, CDS Hooks 2.0 section "Trusting CDS Clients") ---
    # On by default. ``CDS_AUTH_ENABLED=false`` turns it off for local development only.
    "AUTH_ENABLED": True,
    # Trusted clients: a list of mappings, each with ``iss`` and one of ``jwks_url`` /
    # ``jwks_file``, optionally ``jku_allowlist`` (list of URLs) and ``tenants`` (list).
    "TRUSTED_CLIENTS": [],
    # Trust the public CDS Hooks sandbox (its private key is public: testing only).
    "SANDBOX_CLIENT_ENABLED": False,
    # Accepted JWS algorithms: asymmetric only; "none" and HS* are never accepted.
    "JWT_ALGORITHMS": ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    # Clock skew tolerated for exp / iat / nbf (the sandbox's iat can be ahead of ours).
    "JWT_LEEWAY_SECONDS": 5,
    # Longest accepted token lifetime (exp - iat); also bounds how long a jti is remembered.
    "JWT_MAX_LIFETIME_SECONDS": 600,
    # JWKS URL fetching: timeout per fetch, how long a fetched key set is cached, and the
    # shortest interval between forced refreshes caused by an unknown kid.
    "JWKS_TIMEOUT_SECONDS": 5,
    "JWKS_CACHE_SECONDS": 300,
    "JWKS_REFRESH_COOLDOWN_SECONDS": 30,
    # Most jti values remembered by the in-process replay cache (per worker process).
    "JTI_CACHE_SIZE": 100_000,
    # --- CORS: browser origins allowed to call the API (e.g. https://sandbox.cds-hooks.org) ---
    "CORS_ORIGINS": [],
    # Audit trail and feedback storage. Empty DATABASE_URL: SQLite in the instance folder.
    "DATABASE_URL": "",
    "AUDIT_ENABLED": True,  # record hook calls that return a card
    "AUDIT_ALL_CALLS": False,  # record every hook call, with or without a card
    "AUDIT_RETENTION_DAYS": 365,  # `cds-service purge` deletes records older than this
    "DB_AUTO_UPGRADE": True,  # run the Alembic migrations when the app starts
    # Session-cookie secret for /review. Empty: generated once and kept in the instance folder.
    "SECRET_KEY": "",
    "REVIEW_PAGE_SIZE": 50,
    # --- Da Vinci CRD (README "Da Vinci CRD") ---
    # Card source.topic per verified client iss: {"<iss>": {"system": ..., "code": ...,
    # "display": ...}}. Clients not listed get the CRD card type of the version in use
    # (2.0.1: CodeSystem/temp "off-guideline"). Epic wants an alphanumeric code of at most 100
    # characters, e.g. {"system": "urn:iv-anesthetics-cds:card-topic", "code": "offguideline"}.
    "CARD_TOPIC_BY_ISS": {},
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def as_bool(value: object, key: str) -> bool:
    """Read a boolean setting that may come from the environment as a string.

    ``from_prefixed_env`` turns ``false`` into ``False`` but leaves ``False``/``no``/``off``
    as (truthy) strings; an unrecognised value is an error rather than a silent guess.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{key} must be true or false, not {value!r}")


def as_str_list(value: object, key: str) -> list[str]:
    """A list of strings from a list, or from a comma-separated environment string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{key} must be a list of strings, not {value!r}")
