"""The cds-service command: offline evaluation and a real server (waitress, one or several workers)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import pytest
import requests

from cds_service.cli import main, start_up_without_gc

from .conftest import FIXTURES, ROOT
from .servers import free_port, running_server

CRPS = FIXTURES / "hook-requests" / "01-crps-ketamine-reasoncode.json"
BIN = Path(sys.executable).parent


def test_evaluate_prints_the_response_json(capsys):
    assert main(["evaluate", str(CRPS)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["cards"][0]["indicator"] == "warning"


def test_evaluate_reports_bad_input_with_nonzero_exit(capsys):
    bad = FIXTURES / "hook-requests" / "35-bad-not-json.txt"
    assert main(["evaluate", str(bad), "--hook", "order-sign"]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


def test_start_up_runs_without_the_garbage_collector_and_freezes_what_it_made():
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with start_up_without_gc():
            assert not gc.isenabled()
            made = [[index] for index in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
    finally:
        gc.unfreeze()  # give this test process's objects back to the collector
    with pytest.raises(RuntimeError), start_up_without_gc():
        raise RuntimeError("bad configuration")
    assert gc.isenabled() and gc.get_freeze_count() == 0  # a failed start-up freezes nothing


def test_serve_runs_on_loopback_and_answers_a_fixture(tmp_path):
    port = free_port()
    env = {**os.environ, "CDS_AUTH_ENABLED": "false"}
    base = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "cds-service"), "serve", "--port", str(port), "--workers", "1"]
    with running_server(argv, f"{base}/cds-services", tmp_path / "serve.log", env=env, cwd=tmp_path):
        discovery = requests.get(f"{base}/cds-services", timeout=10)
        assert discovery.status_code == 200
        response = requests.post(f"{base}/cds-services/iv-anesthetics-order-sign", data=CRPS.read_bytes(),
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 200
        assert response.json()["cards"][0]["summary"].startswith("IV ketamine for Complex regional pain")


def _database_fds(pid: int, database: Path) -> list[str]:
    """The open files of ``pid`` that are the SQLite database or its -wal / -shm files."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(database)) and not target.endswith("-lock"):
            found.append(target)
    return found


def test_serve_workers_inherit_no_database_connection_from_the_master(tmp_path):
    """The master checks the schema before forking (a connection); it closes it, so none crosses a fork."""
    database = tmp_path / "audit.sqlite3"
    port = free_port()
    env = {**os.environ, "CDS_AUTH_ENABLED": "false", "CDS_DATABASE_URL": f"sqlite:///{database}",
           "CDS_SECRET_KEY": "test-only"}
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"]
    with running_server(argv, f"{base}/readyz", tmp_path / "serve.log", env=env, cwd=ROOT) as master:
        for _ in range(6):
            response = requests.post(f"{base}/cds-services/iv-anesthetics-order-sign", data=CRPS.read_bytes(),
                                     headers={"Content-Type": "application/json"}, timeout=10)
            assert response.status_code == 200 and response.json()["cards"]
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != str(master.pid)
                   and _process_group(int(p.name)) == master.pid]
        assert len(workers) == 2
        assert _database_fds(master.pid, database) == []
        assert any(_database_fds(pid, database) for pid in workers)  # they did open their own


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
