"""Several `cds-service serve` workers write the audit trail and feedback at once: nothing lost or doubled."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from cds_service.db import database_url as resolve_url
from cds_service.models import Alert, Feedback, HookCallRecord

from .review_support import ORDER_SIGN, hook_request, override
from .servers import free_port, running_server

CALLS = 200
WORKERS = 3
THREADS = 24


@pytest.fixture()
def served(database_url, tmp_path):
    port = free_port()
    env = dict(os.environ, CDS_DATABASE_URL=database_url, CDS_AUTH_ENABLED="false",
               CDS_SECRET_KEY="concurrency-test")
    base = f"http://127.0.0.1:{port}"
    argv = [str(Path(sys.executable).parent / "cds-service"), "serve", "--port", str(port),
            "--workers", str(WORKERS)]
    with running_server(argv, f"{base}/cds-services", tmp_path / "serve.log", env=env, cwd=tmp_path):
        yield base


def test_concurrent_calls_and_feedback_from_several_workers_are_each_stored_exactly_once(
        served, database_url):
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=THREADS))
    bodies = [hook_request(("G90.511", "M79.7", "F32.9", "G43.709")[i % 4]) for i in range(CALLS)]

    def sign(body):
        response = session.post(f"{served}/cds-services/{ORDER_SIGN}", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["cards"][0]["uuid"]

    def feedback(card):
        response = session.post(f"{served}/cds-services/{ORDER_SIGN}/feedback",
                                json={"feedback": [override(card)]}, timeout=60)
        assert response.status_code == 200, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        cards = list(pool.map(sign, bodies))
        signed = time.perf_counter()
        list(pool.map(feedback, cards + cards))  # every feedback item sent twice
    finished = time.perf_counter()
    print(f"\n{CALLS} calls in {signed - started:.2f}s, {2 * CALLS} feedback posts in "
          f"{finished - signed:.2f}s ({database_url.split(':')[0]}, {WORKERS} workers)")

    engine = create_engine(resolve_url({"DATABASE_URL": database_url}, ""))
    deadline = time.monotonic() + 10  # each worker commits what it answered a moment later (audit journal)
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.scalar(select(func.count()).select_from(HookCallRecord)) >= CALLS:
                break
        time.sleep(0.1)
    with engine.connect() as conn:
        calls = conn.execute(select(HookCallRecord.hook_instance)).scalars().all()
        alerts = conn.execute(select(Alert.card_uuid)).scalars().all()
        fb = conn.execute(select(Feedback.card_uuid, Feedback.unknown_card)).all()
        assert conn.scalar(select(func.count()).select_from(HookCallRecord)) == CALLS
    engine.dispose()
    assert sorted(calls) == sorted(b["hookInstance"] for b in bodies)
    assert sorted(alerts) == sorted(cards)
    assert sorted(card for card, _ in fb) == sorted(cards)
    assert not any(unknown for _, unknown in fb)
