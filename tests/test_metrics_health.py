"""GET /metrics (Prometheus text format, protected by configuration), /healthz and /readyz."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cds_service import create_app, feedback
from cds_service.fhir_client import FetchError, FhirClient, FhirSettings

from .conftest import FIXTURES, load_json
from .review_support import ORDER_SIGN, accepted, call, hook_request
from .servers import free_port, running_server

SERVICE = f"/cds-services/{ORDER_SIGN}"
OUT_OF_SCOPE = FIXTURES / "hook-requests" / "26-etodolac-oral-sandbox-shape.json"
DEPRESSION = FIXTURES / "hook-requests" / "13-depression-ketamine-f33.json"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a /metrics answer (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def scrape(client, **kwargs) -> str:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return response.get_data(as_text=True)


@pytest.fixture()
def quiet_app():
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False})


def test_scrapes_follow_the_value_storage_not_a_later_environment(quiet_app, monkeypatch, tmp_path):
    """In-process values stay visible when PROMETHEUS_MULTIPROC_DIR appears after start-up."""
    client = quiet_app.test_client()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert client.post(SERVICE, json=load_json(OUT_OF_SCOPE)).status_code == 200
    assert sample(scrape(client), "cds_hook_latency_seconds_count", path="out_of_scope") >= 1


def test_hook_latency_is_a_histogram_by_service_and_path(quiet_app):
    client = quiet_app.test_client()
    before = scrape(client)
    for path in (OUT_OF_SCOPE, OUT_OF_SCOPE, DEPRESSION):
        assert client.post(SERVICE, json=load_json(path)).status_code == 200
    after = scrape(client)
    name, labels = "cds_hook_latency_seconds_count", {"service": ORDER_SIGN}
    assert sample(after, name, path="out_of_scope", **labels) - sample(before, name, path="out_of_scope",
                                                                         **labels) == 2
    assert sample(after, name, path="in_scope", **labels) - sample(before, name, path="in_scope", **labels) == 1
    assert sample(after, "cds_hook_latency_seconds_bucket", path="in_scope", le="+Inf", **labels) >= 1


def test_cards_are_counted_by_policy_family_and_indicator(quiet_app):
    client = quiet_app.test_client()
    labels = {"policy": "bcbsmn-ii-271", "family": "depression", "indicator": "warning"}
    before = sample(scrape(client), "cds_cards_total", **labels)
    cards = client.post(SERVICE, json=load_json(DEPRESSION)).get_json()["cards"]
    assert len(cards) == 1 and cards[0]["indicator"] == "warning"
    assert sample(scrape(client), "cds_cards_total", **labels) == before + 1


def test_metrics_refuse_an_address_outside_the_allowlist(quiet_app):
    response = quiet_app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_metrics_bearer_token_admits_any_address_and_a_wrong_one_does_not():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False,
                      "METRICS_BEARER_TOKEN": "scrape-secret", "METRICS_ALLOW_FROM": ""})
    client, remote = app.test_client(), {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    assert client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is not allowlisted any more


def test_metrics_can_be_switched_off():
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False, "METRICS_ENABLED": "false"})
    assert app.test_client().get("/metrics").status_code == 404


def test_a_bad_metrics_allowlist_is_refused_at_start_up():
    with pytest.raises(ValueError, match="METRICS_ALLOW_FROM"):
        create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False, "METRICS_ALLOW_FROM": ["not-a-network"]})


def test_authentication_failures_are_counted_by_reason():
    app = create_app({"TESTING": True, "AUDIT_ENABLED": False, "TRUSTED_CLIENTS": []})
    client = app.test_client()
    before = scrape(client)
    assert client.post(SERVICE, json=hook_request()).status_code == 401
    assert client.post(SERVICE, json=hook_request(), headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    after = scrape(client)
    for reason in ("missing bearer token", "malformed token"):
        name = "cds_auth_failures_total"
        assert sample(after, name, reason=reason) == sample(before, name, reason=reason) + 1


def test_fhir_fetches_are_counted_by_outcome(quiet_app):
    client = quiet_app.test_client()
    before = sample(scrape(client), "cds_fhir_fetches_total", outcome="connect_error")
    fhir = FhirClient(f"http://127.0.0.1:{free_port()}/fhir", None, FhirSettings(), time.monotonic() + 2)
    with pytest.raises(FetchError):
        fhir.read("Medication/m1")
    assert sample(scrape(client), "cds_fhir_fetches_total", outcome="connect_error") == before + 1


def test_audit_write_failures_are_counted(storage_app, monkeypatch):
    client = storage_app.test_client()
    before = sample(scrape(client), "cds_audit_write_failures_total")
    database = storage_app.extensions["cds"].database

    def broken_transaction():
        raise RuntimeError("disk full")

    monkeypatch.setattr(database, "transaction", broken_transaction)
    assert call(client, hook_request())  # the EHR still gets its card (the journal has the record)
    assert database.writer.settle()  # the database write has failed by now
    assert sample(scrape(client), "cds_audit_write_failures_total") == before + 1


def test_feedback_write_failures_are_counted(storage_app, monkeypatch):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    before = sample(scrape(client), "cds_feedback_write_failures_total")

    def failing_store(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(feedback, "store_feedback", failing_store)
    response = client.post(f"{SERVICE}/feedback", json={"feedback": [accepted(card["uuid"])]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["spooled"] == 1  # kept in the local spool, not lost
    assert sample(scrape(client), "cds_feedback_write_failures_total") == before + 1


def test_metrics_add_up_across_worker_processes(tmp_path):
    """serve with two workers: every call is counted, whichever worker answered it or the scrape.

    A worker counts a call within its metrics thread's interval (50 ms), so the other worker's
    calls may show a moment later: the scrapes wait for 20 (a deadline, not a sleep), then must
    stay at 20, and every scrape must succeed (a worker's value file being created under a
    scrape, prometheus/client_python#1199, must not fail it)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(CDS_AUTH_ENABLED="false", CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
               CDS_SECRET_KEY="test-secret")
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--threads", "2"]
    body = OUT_OF_SCOPE.read_bytes()
    with running_server(argv, base + "/readyz", tmp_path / "serve.log", env=env):
        for _ in range(20):
            requests.post(base + SERVICE, data=body, headers={"Content-Type": "application/json"},
                          timeout=10).raise_for_status()

        def counted() -> float:
            response = requests.get(base + "/metrics", timeout=10)
            assert response.status_code == 200, response.text[:300]
            return sample(response.text, "cds_hook_latency_seconds_count", service=ORDER_SIGN, path="out_of_scope")

        deadline = time.monotonic() + 10
        while counted() < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [counted() for _ in range(4)] == [20, 20, 20, 20]


def test_serve_metrics_directory_is_private_and_removed_by_its_creator_only(tmp_path):
    probe = (
        "import os, sys\n"
        "from cds_service.cli import prepare_multiprocess_dir\n"
        "d = prepare_multiprocess_dir()\n"
        "print(d, flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)\n"  # a worker leaving runs the inherited atexit hook: the directory must stay
        "os.waitpid(pid, 0)\n"
        "print(os.path.isdir(d), flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    directory, still_there_after_child = result.stdout.split()
    assert still_there_after_child == "True"
    assert not os.path.exists(directory)  # removed when the creating process exited


def test_an_operators_metrics_directory_is_emptied_of_the_last_run(tmp_path, monkeypatch):
    from cds_service.cli import prepare_multiprocess_dir

    (tmp_path / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_multiprocess_dir() == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_healthz_answers_without_authentication():
    app = create_app({"TESTING": True, "AUDIT_ENABLED": False, "TRUSTED_CLIENTS": []})
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "alive"}


def test_readyz_is_ready_when_knowledge_and_database_answer(storage_app):
    response = storage_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"knowledge": "ok", "database": "ok"}}


def test_readyz_without_storage_checks_the_knowledge_only(quiet_app):
    response = quiet_app.test_client().get("/readyz")
    assert response.status_code == 200 and response.get_json()["checks"] == {"knowledge": "ok"}


def test_readyz_is_503_with_an_operation_outcome_when_the_database_is_unreachable(storage_app, tmp_path):
    from sqlalchemy import create_engine

    probe = storage_app.extensions["cds_readyz_probe"]
    probe.database = type("Unreachable", (), {"engine": create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")})()
    response = storage_app.test_client().get("/readyz")
    assert response.status_code == 503
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    assert outcome["issue"][0]["diagnostics"].startswith("database: database unreachable")


def test_readyz_does_not_hang_on_a_database_that_does_not_answer(storage_app, monkeypatch):
    storage_app.config["READYZ_DB_TIMEOUT_SECONDS"] = 0.2
    probe = storage_app.extensions["cds_readyz_probe"]
    monkeypatch.setattr(probe, "_select_one", lambda: time.sleep(1.5))
    client = storage_app.test_client()
    started = time.monotonic()
    first, second = client.get("/readyz"), client.get("/readyz")
    assert time.monotonic() - started < 1.0
    assert (first.status_code, second.status_code) == (503, 503)
    assert "did not answer within 0.2 s" in first.get_json()["issue"][0]["diagnostics"]
    assert "still waiting" in second.get_json()["issue"][0]["diagnostics"]
