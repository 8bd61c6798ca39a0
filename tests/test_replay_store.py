"""Replay protection shared through the database: across Database objects, apps and real servers."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from cds_service import create_app
from cds_service.db import Database
from cds_service.replay import (
    DatabaseReplayCache,
    InMemoryReplayCache,
    ReplayStoreUnavailable,
    SharedCooldown,
)

from .conftest import _fresh_postgres_database, postgres_base_url
from .jwt_support import ISS, JwksServer, bearer, claims, ec_key, jwks, rsa_key, sign
from .servers import free_port, running_server

KEY = ec_key("replay-1", "ES384")
BIN = Path(sys.executable).parent


def store(url: str, clock=time.time, *, fallback: bool = True) -> DatabaseReplayCache:
    return DatabaseReplayCache(Database(url), InMemoryReplayCache(1000), fallback_to_memory=fallback, clock=clock)


@pytest.fixture()
def migrated(database_url):
    Database(database_url).upgrade()
    return database_url


def test_a_token_accepted_through_one_database_object_is_refused_through_another(migrated):
    first, second = store(migrated), store(migrated)
    expires = time.time() + 300
    assert first.check_and_remember((ISS, "jti-1"), expires)
    assert not second.check_and_remember((ISS, "jti-1"), expires)
    assert not store(migrated).check_and_remember((ISS, "jti-1"), expires)  # "after a restart"
    assert second.check_and_remember((ISS, "jti-2"), expires)
    assert second.check_and_remember(("https://other-issuer", "jti-1"), expires)


def test_racing_workers_accept_one_token_exactly_once(migrated):
    stores = [store(migrated) for _ in range(6)]
    barrier, results = threading.Barrier(len(stores)), []

    def worker(s: DatabaseReplayCache) -> None:
        barrier.wait()
        results.append(s.check_and_remember((ISS, "raced"), time.time() + 300))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_an_expired_row_is_taken_over_and_expired_rows_are_purged(migrated):
    from sqlalchemy import func, select

    from cds_service.models import SeenToken

    now = [1000.0]
    s = store(migrated, clock=lambda: now[0])
    assert s.check_and_remember((ISS, "old"), 1010.0)
    assert s.check_and_remember((ISS, "other"), 1010.0)
    now[0] = 1011.0
    fresh = store(migrated, clock=lambda: now[0])  # another process: its memory never saw "old"
    assert fresh.check_and_remember((ISS, "old"), 1100.0)  # expired row: taken over
    assert not store(migrated, clock=lambda: now[0]).check_and_remember((ISS, "old"), 1100.0)
    with Database(migrated).session() as session:
        assert session.scalar(select(func.count()).select_from(SeenToken)) == 1  # "other" purged


def test_an_unreachable_database_falls_back_to_memory_or_refuses():
    url = f"postgresql+psycopg://cds@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    lenient = store(url)
    assert lenient.check_and_remember((ISS, "a"), time.time() + 60)
    assert not lenient.check_and_remember((ISS, "a"), time.time() + 60)
    assert lenient.unavailable_count == 1
    with pytest.raises(ReplayStoreUnavailable):
        store(url, fallback=False).check_and_remember((ISS, "b"), time.time() + 60)


def test_shared_cooldown_is_claimed_once_per_period_across_database_objects(migrated):
    now = [5000.0]
    first, second = (SharedCooldown(Database(migrated), lambda: now[0]) for _ in range(2))
    assert first.claim("jwks:x", 30)
    assert not second.claim("jwks:x", 30)
    assert second.claim("jwks:y", 30)
    now[0] = 5031.0
    assert second.claim("jwks:x", 30)
    assert not first.claim("jwks:x", 30)


# --- two apps (as two workers or hosts) on one database -------------------------------------

def _app(url: str, jwks_file: Path, **extra):
    return create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "s",
                       "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_file": str(jwks_file)}], **extra})


def test_two_apps_on_one_database_accept_a_token_once(database_url, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(KEY)))
    first, second = _app(database_url, path).test_client(), _app(database_url, path).test_client()
    token = sign(KEY, claims())
    assert first.get("/cds-services", headers=bearer(token)).status_code == 200
    assert second.get("/cds-services", headers=bearer(token)).status_code == 401
    assert first.get("/cds-services", headers=bearer(token)).status_code == 401


def test_the_database_store_refuses_with_503_when_told_not_to_fall_back(tmp_path, monkeypatch):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(KEY)))
    app = _app(f"sqlite:///{tmp_path / 'a.sqlite3'}", path, JTI_STORE_FALLBACK_TO_MEMORY=False)
    verifier = app.extensions["cds_auth"]
    url = f"postgresql+psycopg://cds@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    verifier.replay_cache = store(url, fallback=False)
    response = app.test_client().get("/cds-services", headers=bearer(sign(KEY, claims())))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_without_a_database_the_replay_cache_is_in_process(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(KEY)))
    app = _app("", path, AUDIT_ENABLED=False)
    assert isinstance(app.extensions["cds_auth"].replay_cache, InMemoryReplayCache)


def test_the_jwks_url_refresh_cooldown_is_shared_by_apps_on_one_database(database_url):
    signer, stranger = rsa_key("url-1", "RS384"), rsa_key("stranger", "RS384")
    server = JwksServer(jwks(signer)).start()
    try:
        config = {"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY": "s",
                  "JWKS_REFRESH_COOLDOWN_SECONDS": 2, "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_url": server.url}]}
        workers = [create_app(config).test_client() for _ in range(3)]
        for http in workers:
            assert http.get("/cds-services", headers=bearer(sign(signer, claims()))).status_code == 200
        assert server.fetches == 3  # each worker's first fetch
        time.sleep(2.2)  # the cooldown started by those fetches is over
        for http in workers * 3:
            assert http.get("/cds-services", headers=bearer(sign(stranger, claims()))).status_code == 401
        assert server.fetches == 4  # one forced refresh for all workers, not one each
    finally:
        server.stop()


# --- two real `cds-service serve` instances sharing one PostgreSQL ---------------------------

PUBLIC = "https://cds.example.org"


@pytest.fixture()
def shared_postgres():
    base = postgres_base_url()
    url, drop = _fresh_postgres_database(base)
    Database(url).upgrade()  # once, before two servers start
    yield url
    drop()


def _serve(port: int, env: dict[str, str], log: Path):
    argv = [str(BIN / "cds-service"), "serve", "--port", str(port), "--workers", "1"]
    return running_server(argv, f"http://127.0.0.1:{port}/openapi.json", log, env=env, cwd=log.parent)


def test_a_token_accepted_by_one_instance_is_refused_by_another_and_after_a_restart(shared_postgres, tmp_path):
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(KEY)))
    env = {**os.environ, "CDS_DATABASE_URL": shared_postgres, "CDS_PUBLIC_BASE_URL": PUBLIC,
           "CDS_AUTH_ENABLED": "true", "CDS_SECRET_KEY": "s",
           "CDS_TRUSTED_CLIENTS": json.dumps([{"iss": ISS, "jwks_file": str(tmp_path / "jwks.json")}])}
    ports = free_port(), free_port()

    def call(port: int, token: str) -> int:
        return requests.get(f"http://127.0.0.1:{port}/cds-services", headers=bearer(token), timeout=10).status_code

    tokens = [sign(KEY, claims(f"{PUBLIC}/cds-services")) for _ in range(5)]
    with _serve(ports[0], env, tmp_path / "a.log"):
        with _serve(ports[1], env, tmp_path / "b.log"):
            accepted = {t: 0 for t in tokens}
            for token in tokens:
                for attempt in range(10):  # alternate between the two instances
                    if call(ports[attempt % 2], token) == 200:
                        accepted[token] += 1
            assert list(accepted.values()) == [1] * len(tokens)
        fresh = sign(KEY, claims(f"{PUBLIC}/cds-services"))
        assert call(ports[0], fresh) == 200
    with _serve(ports[0], env, tmp_path / "a2.log"):  # restarted: its memory is empty
        assert all(call(ports[0], t) == 401 for t in [*tokens, fresh])
        assert call(ports[0], sign(KEY, claims(f"{PUBLIC}/cds-services"))) == 200
