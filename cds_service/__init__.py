"""CDS Hooks 2.0 service: IV ketamine and IV lidocaine orders against payer medical policy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask

from .auth import init_auth
from .card_render import CardText
from .config import DEFAULTS
from .db import Database, database_url
from .errors import register_error_handlers
from .fhir_client import FhirSettings
from .fhir_source import FhirDataSource
from .gather import DataSource
from .http_policy import init_http
from .knowledge import Knowledge, load_knowledge
from .policy_choice import PolicySettings
from .recording import NullRecorder, Recorder

__all__ = ["create_app"]


@dataclass
class ServiceState:
    """Per-app objects built once at start-up."""

    knowledge: Knowledge
    card_text: CardText
    data_source_factory: Any = field(default=DataSource)
    recorder: Recorder = field(default_factory=NullRecorder)
    database: Database | None = None
    policy_settings: PolicySettings | None = None  # DEFAULT_POLICY_ID / _WHEN, UNMATCHED_PAYER_CARD


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(prefix="CDS")
    if config:
        app.config.from_mapping(config)

    cards_dir = Path(app.config["CARDS_DIR"])
    knowledge = load_knowledge(cards_dir)
    if app.config["DEFAULT_POLICY_ID"] not in knowledge.policies:
        raise ValueError(
            f"DEFAULT_POLICY_ID {app.config['DEFAULT_POLICY_ID']!r} is not one of "
            f"{sorted(knowledge.policies)}"
        )
    card_text = CardText(json.loads((cards_dir / "card-text.json").read_text(encoding="utf-8")))
    fhir_settings = FhirSettings.from_config(app.config)
    state = ServiceState(
        knowledge, card_text, data_source_factory=partial(FhirDataSource, settings=fhir_settings),
        policy_settings=PolicySettings(app.config["DEFAULT_POLICY_ID"], app.config["DEFAULT_POLICY_WHEN"],
                                       app.config["UNMATCHED_PAYER_CARD"]),
    )
    app.extensions["cds"] = state
    _init_storage(app, state)

    register_error_handlers(app)
    init_auth(app)
    init_http(app)
    from .feedback import bp as feedback_bp
    from .review import init_review
    from .routes import bp

    app.register_blueprint(bp)
    app.register_blueprint(feedback_bp)
    init_review(app)
    return app


def _init_storage(app: Flask, state: ServiceState) -> None:
    """Database, durable recorder and session secret (see docs/review.md)."""
    from .audit import DatabaseRecorder
    from .secret import instance_secret

    if not app.config["AUDIT_ENABLED"]:  # no storage at all: no audit, feedback or review
        return
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(app.instance_path)
    state.database = Database(database_url(app.config, app.instance_path))
    if app.config["DB_AUTO_UPGRADE"]:
        state.database.upgrade()
    state.recorder = DatabaseRecorder(state.database, all_calls=bool(app.config["AUDIT_ALL_CALLS"]))
