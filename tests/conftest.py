from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service import create_app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fhir_fixtures"


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.sqlite3"
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{db}"})


@pytest.fixture()
def client(app):
    return app.test_client()


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
