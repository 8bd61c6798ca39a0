from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cds_service import create_app

from .cds_response_rules import discovery_problems, response_problems

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fhir_fixtures"
TEST_PUBLIC_BASE_URL = "http://localhost"  # where the Flask test client sends requests


class SpecCheckingClient(FlaskClient):
    """A test client that holds every CDS Hooks response the suite produces to the spec rules."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        request = response.request
        path, method = request.path.rstrip("/"), request.method
        if response.status_code == 200 and response.is_json:
            if method == "GET" and path == "/cds-services":
                problems = discovery_problems(response.get_json())
                assert not problems, problems
            elif method == "POST" and path.startswith("/cds-services/") and path.count("/") == 2:
                problems = response_problems(response.get_json())
                assert not problems, problems
        return response


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.sqlite3"
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{db}"})
    app.test_client_class = SpecCheckingClient
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


# --- storage, audit and review -------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _storage_outside_the_work_tree(tmp_path_factory):
    """Apps built without DATABASE_URL / SECRET_KEY keep their data in a temp dir, not instance/.

    Apps with authentication on need PUBLIC_BASE_URL; the Flask test client calls http://localhost.
    """
    folder = tmp_path_factory.mktemp("default-storage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDS_DATABASE_URL", f"sqlite:///{folder / 'audit.sqlite3'}")
        patch.setenv("CDS_SECRET_KEY", "test-session-secret")
        patch.setenv("CDS_SPOOL_DIR", str(folder))
        patch.setenv("CDS_PUBLIC_BASE_URL", TEST_PUBLIC_BASE_URL)
        patch.setenv("CDS_LOG_LEVEL", "DEBUG")  # the service's logger passes DEBUG records on to caplog
        yield


POSTGRES_ENV = "CDS_TEST_POSTGRES_URL"


def _fresh_postgres_database(base_url: str) -> tuple[str, object]:
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from cds_service.db import database_url

    url = make_url(database_url({"DATABASE_URL": base_url}, ""))
    name = f"cds_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def postgres_base_url() -> str:
    """The test PostgreSQL server's URL: skip without one, but fail on CI, which always starts one."""
    base = os.environ.get(POSTGRES_ENV)
    if not base and os.environ.get("CI") == "true":
        pytest.fail(f"{POSTGRES_ENV} is not set on CI: .ci/run starts PostgreSQL and sets it")
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set (run .ci/postgres.sh, or bash .ci/run, to get one)")
    return base


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.sqlite3'}"
        return
    base = postgres_base_url()
    url, drop = _fresh_postgres_database(base)
    yield url
    drop()


@pytest.fixture()
def storage_app(database_url):
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                       "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": False})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report as item.rep_<phase> (the browser test saves a screenshot on failure)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
