"""CDS Hooks 2.0 service: IV ketamine and IV lidocaine orders against payer medical policy.

Importing the package is cheap: :func:`create_app` imports what it builds (Flask, SQLAlchemy, the
pipeline and its FHIR models), so ``cds-service serve`` can pause the garbage collector for all of
its start-up (cli.py) and other tools can read ``cds_service.config`` without loading the app.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from .card_render import CardText
    from .db import Database
    from .knowledge import Knowledge
    from .policy_choice import PolicySettings
    from .recording import Recorder

__all__ = ["KnowledgeError", "create_app"]


class KnowledgeError(ValueError):
    """The knowledge directory (CARDS_DIR) is missing, incomplete or invalid."""


def _prefetch_only() -> Any:
    from .gather import DataSource

    return DataSource


def _null_recorder() -> Recorder:
    from .recording import NullRecorder

    return NullRecorder()


@dataclass
class ServiceState:
    """Per-app objects built once at start-up."""

    knowledge: Knowledge
    card_text: CardText
    data_source_factory: Any = field(default_factory=_prefetch_only)  # create_app: FhirDataSource
    recorder: Recorder = field(default_factory=_null_recorder)
    database: Database | None = None
    replayer: Any = None  # spool.SpoolReplayer when storage is on
    policy_settings: PolicySettings | None = None  # DEFAULT_POLICY_ID / _WHEN, UNMATCHED_PAYER_CARD


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    from flask import Flask

    from .auth import init_auth
    from .config import DEFAULTS
    from .errors import register_error_handlers
    from .fhir_client import FhirSettings
    from .fhir_source import FhirDataSource
    from .http_policy import init_http
    from .json_text import FastJSONProvider
    from .policy_choice import PolicySettings
    from .proxy import init_proxy

    # The instance folder (default SQLite, spool, session secret) must be known before Flask is
    # built: from the mapping, else CDS_INSTANCE_PATH, else Flask's default (instance/ beside the
    # package's source tree, or <prefix>/var/cds_service-instance when installed).
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get("CDS_INSTANCE_PATH") or None
    app = Flask(__name__, instance_relative_config=True,
                instance_path=str(Path(instance_path).resolve()) if instance_path else None)
    app.json = FastJSONProvider(app)  # the same JSON text, written by orjson (json_text.py)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(prefix="CDS")
    if config:
        app.config.from_mapping(config)

    _init_operations(app)
    cards_dir = Path(app.config["CARDS_DIR"])
    knowledge, card_text = _load_knowledge(cards_dir)
    if app.config["DEFAULT_POLICY_ID"] not in knowledge.policies:
        raise ValueError(
            f"DEFAULT_POLICY_ID {app.config['DEFAULT_POLICY_ID']!r} is not one of "
            f"{sorted(knowledge.policies)}"
        )
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
    from .health import init_health
    from .metrics import bp as metrics_bp
    from .review import init_review
    from .routes import bp

    app.register_blueprint(bp)
    app.register_blueprint(feedback_bp)
    init_health(app)
    app.register_blueprint(metrics_bp)
    init_review(app)
    from .fast_lane import HookFastLane

    app.wsgi_app = HookFastLane(app, app.wsgi_app)  # type: ignore[method-assign]
    init_proxy(app)  # outermost: the lane and Flask both see the scheme and client the proxy saw
    return app


def close_connections(app: Flask) -> None:
    """Close the database connections ``app`` holds in its pool (it reconnects when used again).

    ``serve --workers N`` calls it in the master before forking, so that no connection crosses a
    fork (a SQLite or PostgreSQL connection must not be used by two processes): the master has
    one open from the start-up schema check, and each worker builds its own app, engine,
    connections and threads after the fork.
    """
    state = app.extensions.get("cds")
    if state is not None and state.database is not None:
        state.database.engine.dispose()


def _load_knowledge(cards_dir: Path) -> tuple[Knowledge, CardText]:
    """The knowledge and card text, or one KnowledgeError that says what is wrong and where."""
    from .card_render import CardText
    from .knowledge import load_knowledge

    if not cards_dir.is_dir():
        raise KnowledgeError(f"knowledge directory CARDS_DIR={str(cards_dir)!r} does not exist")
    try:
        knowledge = load_knowledge(cards_dir)
        card_text = CardText(json.loads((cards_dir / "card-text.json").read_text(encoding="utf-8")))
        _check_card_text(card_text, cards_dir)
    except FileNotFoundError as exc:
        raise KnowledgeError(f"knowledge directory {str(cards_dir)!r} is incomplete: "
                             f"{exc.filename} is missing") from exc
    except json.JSONDecodeError as exc:
        raise KnowledgeError(f"knowledge directory {str(cards_dir)!r}: a file is not valid JSON "
                             f"(line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a schema failure is a ValueError naming the file
        detail = getattr(exc, "message", None) or str(exc)
        raise KnowledgeError(f"knowledge directory {str(cards_dir)!r} is invalid: "
                             f"{type(exc).__name__}: {detail}"[:500]) from exc
    return knowledge, card_text


def _check_card_text(card_text: CardText, cards_dir: Path) -> None:
    """Every wording the bundled card-text.json has must be in the configured one too (a
    CARDS_DIR copied from an older release would otherwise fail on the first card, not here)."""
    from .config import default_cards_dir

    if cards_dir.resolve() == default_cards_dir().resolve():
        return
    bundled = json.loads((default_cards_dir() / "card-text.json").read_text(encoding="utf-8"))
    given = {section: entries for section, entries in card_text.raw.items() if isinstance(entries, dict)}
    missing = [f"{section}.{key}" for section, entries in bundled.items() if isinstance(entries, dict)
               for key in entries if key not in given.get(section, {})]
    if missing:
        raise KeyError(f"card-text.json lacks {', '.join(missing[:10])} (see the bundled cards/card-text.json)")


def _init_operations(app: Flask) -> None:
    """Logging and the /metrics settings, normalised and checked before anything else starts."""
    from .config import as_bool, as_str_list
    from .logs import configure_logging

    cfg = app.config
    configure_logging(cfg["LOG_LEVEL"], cfg["LOG_FORMAT"])
    cfg["METRICS_ENABLED"] = as_bool(cfg["METRICS_ENABLED"], "METRICS_ENABLED")
    cfg["METRICS_ALLOW_FROM"] = as_str_list(cfg["METRICS_ALLOW_FROM"], "METRICS_ALLOW_FROM")
    for network in cfg["METRICS_ALLOW_FROM"]:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"METRICS_ALLOW_FROM: {network!r} is not an address or network") from None


def _init_storage(app: Flask, state: ServiceState) -> None:
    """Database, durable recorder and session secret (see docs/review.md)."""
    from .audit import HOOK_CALL, DatabaseRecorder, replay_hook_call, replay_journal
    from .audit_journal import journal_wanted
    from .crd.store import COVERAGE_ASSERTIONS, replay_assertions
    from .db import Database, database_url
    from .feedback import FEEDBACK, replay_feedback
    from .secret import instance_secret
    from .spool import Spool, SpoolReplayer, spool_path

    if not app.config["AUDIT_ENABLED"]:  # no storage at all: no audit, feedback or review
        return
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(app.instance_path)
    state.database = Database(database_url(app.config, app.instance_path))
    if app.config["DB_AUTO_UPGRADE"]:
        state.database.upgrade()
    spool_dir = app.config["SPOOL_DIR"] or app.instance_path
    spool = Spool(spool_path(spool_dir, state.database.url), int(app.config["SPOOL_MAX_RECORDS"]))
    state.replayer = SpoolReplayer(spool, {
        HOOK_CALL: partial(replay_hook_call, state.database),
        COVERAGE_ASSERTIONS: partial(replay_assertions, state.database),
        FEEDBACK: partial(replay_feedback, state.database, int(app.config["FEEDBACK_MAX_UNKNOWN_PER_DAY"])),
    }, float(app.config["SPOOL_RETRY_SECONDS"]))
    journal = None
    if journal_wanted(app.config["AUDIT_JOURNAL"], state.database.engine.dialect.name):
        from .audit_journal import Journal

        journal = Journal(spool_dir, state.database.url)
        journal.recover(partial(replay_journal, state.database, state.replayer))  # a process that died
    state.recorder = DatabaseRecorder(state.database, all_calls=bool(app.config["AUDIT_ALL_CALLS"]),
                                      replayer=state.replayer, journal=journal)
