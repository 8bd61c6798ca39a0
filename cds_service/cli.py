"""``cds-service`` command line: run the server, or evaluate a request offline."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .services import SERVICES


def _service_for_hook(hook: str) -> str:
    for service in SERVICES.values():
        if service.hook == hook:
            return service.id
    raise SystemExit(f"no service handles hook {hook!r}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import create_app

    body = Path(args.request).read_bytes() if args.request != "-" else sys.stdin.buffer.read()
    hook = args.hook
    if hook is None:
        try:
            hook = json.loads(body).get("hook") or "order-sign"
        except (ValueError, AttributeError):
            hook = "order-sign"
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False, "LOG_LEVEL": "WARNING"})
    response = app.test_client().post(
        f"/cds-services/{_service_for_hook(hook)}", data=body,
        content_type="application/json",
    )
    print(json.dumps(response.get_json(silent=True), indent=2))
    return 0 if response.status_code == 200 else 1


def startup_warnings(config: Mapping[str, Any]) -> list[str]:
    """Settings an operator must not miss: they weaken or break authentication."""
    warnings = []
    if not config["AUTH_ENABLED"]:
        warnings.append("authentication is OFF (AUTH_ENABLED=false): anyone who can reach this "
                        "port can call the CDS services. Use this for local development only.")
    elif config["SANDBOX_CLIENT_ENABLED"]:
        warnings.append("the CDS Hooks sandbox is a trusted client (SANDBOX_CLIENT_ENABLED): its "
                        "private key is public, so anyone can sign tokens it accepts. Testing only.")
    elif not config["TRUSTED_CLIENTS"]:
        warnings.append("no TRUSTED_CLIENTS are configured: every call will be answered 401.")
    return warnings


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """Metrics shared by all worker processes: set up ``PROMETHEUS_MULTIPROC_DIR`` for prometheus-client.

    Must run before prometheus-client is first imported (nothing in ``import cds_service`` imports
    it). An operator's directory is used and emptied of the last run's files, as prometheus-client
    requires; without one, a fresh private temporary directory is created.
    """
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        directory = Path(existing)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="cds-metrics-"))
        os.environ[MULTIPROC_ENV] = str(directory)
        owner = os.getpid()  # forked workers inherit the atexit hook; only the creator removes the directory
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(directory, ignore_errors=True))
    return directory


def app_factory(spec: str | None) -> Callable[[], Any]:
    """The WSGI app factory ``serve`` runs: the service, or ``module:function`` (bench/throughput.py
    serves a bare Flask app through exactly the same server this way)."""
    if not spec:
        from . import create_app

        return create_app
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit(f"--app must be module:function, not {spec!r}")
    return getattr(importlib.import_module(module), attr)


@contextmanager
def start_up_without_gc() -> Iterator[None]:
    """Start-up with the cyclic garbage collector paused, then everything it made frozen.

    Importing the app and building it allocates ~170,000 objects that live as long as the process
    and almost no garbage (a collection afterwards finds ~700 objects, ~3,300 after a schema
    upgrade, and takes 0.1 s), yet the collector would run some 200 times meanwhile (~7-10 % of a
    cold start; bench/coldstart.py). That little garbage is frozen with the rest, not freed.
    :func:`gc.freeze` then moves them out of the collector's sight for good: later collections are
    cheaper, and forked workers do not dirty the pages they share with the master by scanning them
    (the pattern the :mod:`gc` documentation gives for processes that fork). A failed start-up
    leaves the collector as it was.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    except BaseException:
        if enabled:
            gc.enable()
        raise
    gc.freeze()
    if enabled:
        gc.enable()


def cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.certfile) != bool(args.keyfile):
        raise SystemExit("--certfile and --keyfile go together")
    if args.certfile:
        raise SystemExit("cds-service serve speaks plain HTTP: terminate TLS at a reverse proxy "
                         "(docs/serving.md has an nginx example)")
    with start_up_without_gc():
        prepare_multiprocess_dir()  # before anything imports prometheus-client
        from .serving import ServeOptions, serve

        create_app = app_factory(args.app)
        app = create_app()  # fail fast on bad configuration or knowledge files, before forking
    for warning in startup_warnings(app.config) if not args.app else []:
        print(f"WARNING: {warning}", file=sys.stderr)
    # One process with threads by default: the hook mostly waits on the EHR's FHIR server, which
    # threads overlap well. Slow or idle connections cost no thread (cds_service/serving.py).
    from .audit import settle_journals

    options = ServeOptions.from_config(app.config, host=args.host, port=args.port,
                                       workers=args.workers, threads=args.threads, on_stop=settle_journals)
    if options.workers > 1:
        from . import close_connections

        close_connections(app)  # the workers fork from this process: no connection may go with them
    serve(create_app, options, app=app)
    return 0


def _storage_app():
    from . import create_app

    app = create_app()
    database = app.extensions["cds"].database
    if database is None:
        raise SystemExit("storage is off (AUDIT_ENABLED is false)")
    return app, database


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from . import create_app

    app = create_app({"DB_AUTO_UPGRADE": False})
    database = app.extensions["cds"].database
    if database is None:
        raise SystemExit("storage is off (AUDIT_ENABLED is false)")
    database.upgrade()
    print(f"database schema is up to date ({database.engine.url.render_as_string(hide_password=True)})")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from .retention import purge

    app, database = _storage_app()
    days = args.days if args.days is not None else int(app.config["AUDIT_RETENTION_DAYS"])
    counts = purge(database, days)
    print(f"purged records older than {days} days: " +
          ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0


def cmd_create_reviewer(args: argparse.Namespace) -> int:
    import getpass

    from .review.auth import create_reviewer

    _, database = _storage_app()
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise SystemExit("the passwords differ")
    try:
        create_reviewer(database, args.username, password)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"reviewer {args.username!r} can now sign in at /review/login")
    return 0


def cmd_assertion(args: argparse.Namespace) -> int:
    """Print a kept CRD coverage assertion (one row per order it covers) as JSON."""
    from .crd.store import find_assertion

    _, database = _storage_app()
    rows = find_assertion(database, args.assertion_id)
    if not rows:
        print(f"no coverage assertion with id {args.assertion_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (waitress; docs/serving.md)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (each has its own JWT replay cache; default 1)")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    serve.add_argument("--certfile", help=argparse.SUPPRESS)  # refused with a pointer to docs/serving.md
    serve.add_argument("--keyfile", help=argparse.SUPPRESS)
    serve.add_argument("--app", help=argparse.SUPPRESS)  # module:factory instead of the service (bench/)
    serve.set_defaults(func=cmd_serve)

    evaluate = sub.add_parser("evaluate", help="print the response to a hook request, offline")
    evaluate.add_argument("request", help="path to a CDS Hooks request JSON file, or - for stdin")
    evaluate.add_argument("--hook", choices=sorted({s.hook for s in SERVICES.values()}))
    evaluate.set_defaults(func=cmd_evaluate)

    sub.add_parser("db-upgrade", help="create or migrate the audit database schema").set_defaults(
        func=cmd_db_upgrade)
    purge = sub.add_parser("purge", help="delete audit records older than AUDIT_RETENTION_DAYS")
    purge.add_argument("--days", type=int, help="override AUDIT_RETENTION_DAYS")
    purge.set_defaults(func=cmd_purge)
    reviewer = sub.add_parser("create-reviewer",
                              help="create a review-page account (or reset its password)")
    reviewer.add_argument("username")
    reviewer.add_argument("--password-stdin", action="store_true",
                          help="read the password from standard input instead of prompting")
    reviewer.set_defaults(func=cmd_create_reviewer)
    assertion = sub.add_parser("assertion", help="show a Da Vinci CRD coverage assertion by its "
                                                 "coverage-assertion-id")
    assertion.add_argument("assertion_id")
    assertion.set_defaults(func=cmd_assertion)
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import KnowledgeError
    from .config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:  # a setting that stops start-up: the message, no traceback
        print(f"cds-service: configuration error: {exc}", file=sys.stderr)
        return 2
    except KnowledgeError as exc:  # one clear line, not a traceback
        print(f"cds-service: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
