"""No audit record of an answered call is lost when the server dies mid-load (kill -9).

``cds-service serve --workers 2`` with the default SQLite audit trail takes in-scope calls from
several client threads; the whole process group is SIGKILLed while calls are in flight; the
server is started again on the same files (the audit journal files the killed workers left, and
the spool, are replayed at start). Every call that was
answered with a card must then be in ``hook_call``, with its alert. Bounded: about 15 s.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from .servers import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
IN_SCOPE = ROOT / "fhir_fixtures" / "hook-requests" / "13-depression-ketamine-f33.json"
SERVICE = "/cds-services/iv-anesthetics-order-sign"
LOAD_SECONDS = 3.0
CLIENTS = 8


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"CDS_AUTH_ENABLED": "false", "CDS_SECRET_KEY": "crash-test-only",
                "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.sqlite3'}",
                "CDS_SPOOL_DIR": str(tmp_path), "CDS_LOG_LEVEL": "WARNING"})
    return env


def _argv(port: int) -> list[str]:
    return [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2"]


def _load(base: str, template: dict, answered: list[str], stop: threading.Event) -> None:
    session = requests.Session()
    while not stop.is_set():
        instance = str(uuid.uuid4())
        try:
            response = session.post(base + SERVICE, data=json.dumps({**template, "hookInstance": instance}),
                                    headers={"Content-Type": "application/json"}, timeout=5)
        except requests.RequestException:
            continue  # the server is gone: this call was never answered
        if response.status_code == 200 and response.json().get("cards"):
            answered.append(instance)


def _stored(database: Path) -> tuple[set[str], int]:
    with sqlite3.connect(database) as conn:
        instances = {row[0] for row in conn.execute("SELECT hook_instance FROM hook_call")}
        alerts = conn.execute("SELECT count(*) FROM alert a JOIN hook_call h ON a.hook_call_id = h.id").fetchone()[0]
    return instances, alerts


def test_kill_9_mid_load_loses_no_answered_record(tmp_path):
    template = json.loads(IN_SCOPE.read_text(encoding="utf-8"))
    env = _env(tmp_path)
    answered: list[str] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_server(_argv(port), base + "/readyz", tmp_path / "first.log", env=env, cwd=ROOT) as server:
        stop = threading.Event()
        clients = [threading.Thread(target=_load, args=(base, template, answered, stop)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(LOAD_SECONDS)
        os.killpg(server.pid, signal.SIGKILL)  # the master and both workers, mid-load
        server.wait(timeout=10)
        stop.set()
        for client in clients:
            client.join(10)
    killed_at = len(answered)
    assert killed_at >= 20, f"only {killed_at} calls answered before the kill: the load did not run"
    only_in_journal = len(set(answered) - _stored(tmp_path / "audit.sqlite3")[0])
    left = list(tmp_path.glob("cds-journal-*.jsonl"))
    assert left, "the killed workers left no audit journal file"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_server(_argv(port), base + "/readyz", tmp_path / "second.log", env=env, cwd=ROOT):
        deadline = time.monotonic() + 10  # spooled records (if any) are replayed in the background
        while True:
            stored, alerts = _stored(tmp_path / "audit.sqlite3")
            missing = set(answered) - stored
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    print(f"crash test: {killed_at} calls answered before kill -9, {only_in_journal} of them only in the "
          f"{len(left)} journal file(s) left; after the restart {len(missing)} missing")
    assert not missing, f"{len(missing)} of {killed_at} answered calls have no audit record"
    assert not set(left) & set(tmp_path.glob("cds-journal-*.jsonl"))  # stored, then deleted
    assert alerts >= killed_at  # each answered call's card is stored with it
