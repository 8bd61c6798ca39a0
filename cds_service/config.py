"""Configuration defaults.

Every key can be overridden by a mapping passed to ``create_app(config)`` or by an
environment variable ``CDS_<KEY>`` (values are parsed as JSON when they look like JSON,
see :meth:`flask.Config.from_prefixed_env`).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_cards_dir() -> Path:
    """The bundled knowledge: ``cds_service/cards`` in an installed wheel, ``./cards`` in a checkout.

    pyproject.toml ships the repository's ``cards/`` as the data package ``cds_service.cards``;
    a source checkout or an editable install has no such directory and reads ``cards/`` itself.
    """
    installed = Path(__file__).resolve().parent / "cards"
    return installed if installed.is_dir() else REPO_ROOT / "cards"


DEFAULTS: dict[str, object] = {
    # Knowledge: payer policies, value sets, evidence and card text (a directory laid out like
    # cards/). Default: the knowledge bundled with the package.
    "CARDS_DIR": str(default_cards_dir()),
    # Policy applied when no Coverage in the request matches a payer in cards/policies.
    "DEFAULT_POLICY_ID": "bcbsmn-ii-271",
    # When the default policy applies: no-coverage (only when the request carries no coverage,
    # or it could not be retrieved) | unmatched-coverage (also when the payor matches no policy).
    "DEFAULT_POLICY_WHEN": "no-coverage",
    # Card for a coverage whose payor matches no bundled policy (with DEFAULT_POLICY_WHEN
    # no-coverage): info (names the plan, says no policy for it is on file) | none (quiet).
    "UNMATCHED_PAYER_CARD": "info",
    # Largest request body accepted (bytes); larger bodies get 413.
    "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,
    # Most entries accepted in context.draftOrders (orders and any Medication resources sent
    # with them); a larger request gets 413 before any screening work.
    "MAX_DRAFT_ORDERS": 100,
    # Most cards one response may carry (one per in-scope order); a request with more in-scope
    # orders gets 413 before patient data is gathered.
    "MAX_CARDS": 50,
    # --- cds-service serve (waitress; docs/serving.md) ---
    # Seconds allowed for one request's headers and body to arrive, from its first byte; a slower
    # request is dropped. Slow or idle connections never hold an application thread.
    "SERVE_REQUEST_READ_TIMEOUT": 15,
    # Seconds a keep-alive connection may stay silent between requests before it is closed.
    "SERVE_IDLE_TIMEOUT": 30,
    # Open connections accepted per worker process; more wait in the listen backlog.
    "SERVE_MAX_CONNECTIONS": 1000,
    # Largest request line plus headers (bytes); larger gets 431 with an OperationOutcome.
    "SERVE_MAX_HEADER_BYTES": 64 * 1024,
    # Public base URL of the service (scheme://host[:port][/prefix]) as CDS clients call it:
    # the JWT audience is this + the request path, never the request's Host header. Required
    # when AUTH_ENABLED; several (a list, or comma-separated) when clients use several names.
    "PUBLIC_BASE_URL": "",
    # Reverse proxies in front of the service whose X-Forwarded-* headers are trusted
    # (werkzeug ProxyFix counts). 0 = the header is ignored; set only behind your own proxy.
    "PROXY_FIX_X_FOR": 0,  # X-Forwarded-For (client address, e.g. for login throttling)
    "PROXY_FIX_X_PROTO": 0,  # X-Forwarded-Proto (https behind a TLS-terminating proxy)
    "PROXY_FIX_X_HOST": 0,  # X-Forwarded-Host
    "PROXY_FIX_X_PORT": 0,  # X-Forwarded-Port
    "PROXY_FIX_X_PREFIX": 0,  # X-Forwarded-Prefix (the service mounted under a path)
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
    # Most jti values remembered by the in-process replay cache (per worker process). With
    # storage on (AUDIT_ENABLED), seen jtis are also kept in the database, shared by every
    # worker and instance; the in-process cache is then a first, local check.
    "JTI_CACHE_SIZE": 100_000,
    # When the database cannot be reached to record a jti: true = accept on the strength of
    # the in-process cache alone (logged; replays to *other* processes go undetected during
    # the outage), false = refuse the call (503 with Retry-After) until the database is back.
    "JTI_STORE_FALLBACK_TO_MEMORY": True,
    # --- CORS: browser origins allowed to call the API (e.g. https://sandbox.cds-hooks.org) ---
    "CORS_ORIGINS": [],
    # Audit trail and feedback storage. Empty DATABASE_URL: SQLite in the instance folder.
    "DATABASE_URL": "",
    "AUDIT_ENABLED": True,  # record hook calls that return a card
    "AUDIT_ALL_CALLS": False,  # record every hook call, with or without a card
    "AUDIT_RETENTION_DAYS": 365,  # `cds-service purge` deletes records older than this
    "DB_AUTO_UPGRADE": True,  # run the Alembic migrations when the app starts
    # Local spool for audit and feedback records the database could not take (docs/review.md).
    # The file is cds-spool-<hash of DATABASE_URL>.sqlite3 in SPOOL_DIR (empty: the instance
    # folder), so records only ever go to the database they were meant for. Mode 0600.
    "SPOOL_DIR": "",
    "SPOOL_MAX_RECORDS": 100_000,  # beyond this, audit records are lost (counted) and feedback gets 503
    "SPOOL_RETRY_SECONDS": 5,  # how often a process with spooled records retries the database
    # Answer a hook call once its audit records are in the process's journal file in SPOOL_DIR,
    # and write them to the database a moment later (docs/review.md); false: answer only after the
    # database has committed them; auto: true with SQLite, false with PostgreSQL (whose commit is
    # durable on the server, which the journal's file on this host is not).
    "AUDIT_JOURNAL": "auto",
    # Feedback limits: longer userComment gets 400; more items per request gets 400.
    "FEEDBACK_MAX_COMMENT_CHARS": 2000,
    "FEEDBACK_MAX_ITEMS": 100,
    # Feedback for cards this service never issued: stored without free text (no userComment,
    # no reason display), and at most this many such rows per service in 24 hours.
    "FEEDBACK_MAX_UNKNOWN_PER_DAY": 1000,
    # Session-cookie secret for /review. Empty: generated once and kept in the instance folder.
    "SECRET_KEY": "",
    "REVIEW_PAGE_SIZE": 50,
    # Review login throttle (counts shared through the database, see docs/review.md): failed
    # logins per account, and per client address, within the window before the key is locked.
    "REVIEW_LOGIN_MAX_FAILURES": 5,
    "REVIEW_LOGIN_MAX_FAILURES_PER_ADDRESS": 20,
    # Seconds over which failures are counted; an older first failure starts the count again.
    "REVIEW_LOGIN_WINDOW_SECONDS": 900,
    # Seconds a locked account or address is refused, even with the right password.
    "REVIEW_LOGIN_LOCK_SECONDS": 900,
    # --- Operations (docs/deployment.md) ---
    # Log level of the cds_service loggers (DEBUG | INFO | WARNING | ERROR); INFO gives one line per hook call.
    "LOG_LEVEL": "INFO",
    # Log line format on standard error: json (one JSON object per line) | text.
    "LOG_FORMAT": "json",
    # Serve GET /metrics (Prometheus text format)? false: /metrics answers 404.
    "METRICS_ENABLED": True,
    # Clients allowed to read /metrics without a token: addresses or networks (CIDR), comma-separated
    # in the environment. The address is the TCP peer (a proxy on the same host is loopback!).
    "METRICS_ALLOW_FROM": ["127.0.0.0/8", "::1/128"],
    # Bearer token that also admits a /metrics scrape from any address. Empty: no token accepted.
    "METRICS_BEARER_TOKEN": "",
    # Seconds GET /readyz waits for the database's answer to SELECT 1 before answering 503.
    "READYZ_DB_TIMEOUT_SECONDS": 1.0,
    # --- Da Vinci CRD (README "Da Vinci CRD") ---
    # Card source.topic per verified client iss: {"<iss>": {"system": ..., "code": ...,
    # "display": ...}}. Clients not listed get the CRD card type of the version in use
    # (2.0.1: CodeSystem/temp "off-guideline"). Epic wants an alphanumeric code of at most 100
    # characters, e.g. {"system": "urn:iv-anesthetics-cds:card-topic", "code": "offguideline"}.
    "CARD_TOPIC_BY_ISS": {},
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting that stops start-up; ``cds-service`` prints the message and exits non-zero."""


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
