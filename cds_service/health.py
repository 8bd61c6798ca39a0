"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can do its work).

Both are unauthenticated and cheap, for load balancers and orchestrators (docs/deployment.md).
``/readyz`` checks that the knowledge is loaded and, when storage is on, that the database
answers ``SELECT 1`` within ``READYZ_DB_TIMEOUT_SECONDS``. The query runs on one background
thread per app, so a database that hangs cannot hang the probe: the probe answers 503 after
the timeout, and answers 503 at once while an earlier check is still stuck.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


class DatabaseProbe:
    """Runs ``SELECT 1`` off the request thread, at most one at a time."""

    def __init__(self, database) -> None:
        self.database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._pending: Future | None = None

    def _select_one(self) -> None:
        with self.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def check(self, timeout: float) -> str | None:
        """None when the database answered, else why not (no connection details)."""
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return "database check still waiting for an earlier answer"
            self._pending = future = self._executor.submit(self._select_one)
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return f"database did not answer within {timeout:g} s"
        except Exception as exc:
            return f"database unreachable ({type(exc).__name__})"
        return None


def _status(status: int, checks: dict[str, str]) -> Response:
    failed = {name: msg for name, msg in checks.items() if msg != "ok"}
    if not failed:
        response = jsonify({"status": "ready", "checks": checks})
    else:
        response = jsonify({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "transient", "diagnostics": f"{name}: {msg}"}
                      for name, msg in failed.items()],
        })
        response.mimetype = "application/fhir+json"
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    response = jsonify({"status": "alive"})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/readyz")
def readyz() -> Response:
    state = current_app.extensions.get("cds")
    checks: dict[str, str] = {}
    knowledge = getattr(state, "knowledge", None)
    checks["knowledge"] = "ok" if knowledge is not None and knowledge.policies else "not loaded"
    probe: DatabaseProbe | None = current_app.extensions.get("cds_readyz_probe")
    if probe is not None:
        problem = probe.check(float(current_app.config["READYZ_DB_TIMEOUT_SECONDS"]))
        checks["database"] = problem or "ok"
    ok = all(msg == "ok" for msg in checks.values())
    return _status(200 if ok else 503, checks)


def init_health(app: Flask) -> None:
    state = app.extensions["cds"]
    if state.database is not None:
        app.extensions["cds_readyz_probe"] = DatabaseProbe(state.database)
    app.register_blueprint(bp)
