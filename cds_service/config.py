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
    # Audit trail and feedback storage. Empty DATABASE_URL: SQLite in the instance folder.
    "DATABASE_URL": "",
    "AUDIT_ENABLED": True,  # record hook calls that return a card
    "AUDIT_ALL_CALLS": False,  # record every hook call, with or without a card
    "AUDIT_RETENTION_DAYS": 365,  # `cds-service purge` deletes records older than this
    "DB_AUTO_UPGRADE": True,  # run the Alembic migrations when the app starts
    # Session-cookie secret for /review. Empty: generated once and kept in the instance folder.
    "SECRET_KEY": "",
    "REVIEW_PAGE_SIZE": 50,
}
