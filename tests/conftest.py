from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cds_service import create_app

from .cds_response_rules import discovery_problems, response_problems

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fhir_fixtures"


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
def app():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False})
    app.test_client_class = SpecCheckingClient
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
