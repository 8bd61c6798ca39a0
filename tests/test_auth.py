"""JWT authentication of CDS clients: real ES384 / RS384 tokens, and each way to be refused."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization

from cds_service import cli, create_app
from cds_service.config import ConfigError
from cds_service.replay import InMemoryReplayCache
from cds_service.trust import SANDBOX_ISS, SANDBOX_JKU, FileKeySource

from .conftest import FIXTURES, load_json
from .jwt_support import (
    BASE,
    ISS,
    JwksServer,
    bearer,
    claims,
    ec_key,
    hmac_signed,
    jwks,
    rsa_key,
    sign,
    unsigned,
)
from .servers import free_port

DISCOVERY = f"{BASE}/cds-services"
SERVICE = f"{BASE}/cds-services/iv-anesthetics-order-sign"
JKU = "https://ehr.example.org/.well-known/jwks.json"
EC = ec_key("ec-1", "ES384")
RSA = rsa_key("rsa-1", "RS384")


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "ehr-jwks.json"
    path.write_text(json.dumps(jwks(EC, RSA)))
    return path


def make_app(jwks_file, **config):
    client = {"iss": ISS, "jwks_file": str(jwks_file), "jku_allowlist": [JKU]}
    client.update(config.pop("client", {}))
    return create_app({"TESTING": True, "TRUSTED_CLIENTS": [client], **config})


@pytest.fixture()
def app(jwks_file):
    return make_app(jwks_file)


@pytest.fixture()
def http(app):
    return app.test_client()


def assert_refused(response):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Authentication failed."


# --- accepted -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [EC, RSA], ids=["ES384", "RS384"])
def test_real_tokens_are_accepted_on_discovery(http, key):
    response = http.get("/cds-services", headers=bearer(sign(key, claims(DISCOVERY))))
    assert response.status_code == 200
    assert response.get_json()["services"]


def test_service_call_records_the_verified_client(app):
    seen = []
    app.extensions["cds"].recorder = type("R", (), {"record_hook_call": lambda self, c, also=None: seen.append(c)})()
    body = load_json(FIXTURES / "hook-requests" / "01-crps-ketamine-reasoncode.json")
    token = sign(RSA, claims(SERVICE, tenant="t1", sub="Practitioner/1"))
    response = app.test_client().post(SERVICE, json=body, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["cards"]
    assert seen[0].client_iss == ISS


def test_client_identity_is_put_on_g(app):
    token_claims = claims(DISCOVERY, tenant="t1")
    with app.test_request_context("/cds-services", headers=bearer(sign(EC, token_claims))):
        from flask import g

        app.preprocess_request()
        assert g.cds_client == {"iss": ISS, "tenant": "t1", "jti": token_claims["jti"]}


def test_extra_claims_nbf_and_sub_and_iat_slightly_ahead_are_accepted(http):
    now = int(time.time())
    payload = claims(DISCOVERY, sub="Practitioner/123", nbf=now - 300, iat=now + 3, custom={"x": 1})
    assert http.get("/cds-services", headers=bearer(sign(EC, payload))).status_code == 200


def test_aud_as_a_list_containing_the_url_is_accepted(http):
    assert http.get("/cds-services", headers=bearer(sign(EC, claims([DISCOVERY, "x"])))).status_code == 200


def test_a_trailing_slash_on_the_called_url_keeps_the_service_url_as_the_audience(http):
    assert http.get("/cds-services/", headers=bearer(sign(EC, claims(DISCOVERY)))).status_code == 200


def test_public_base_url_sets_the_audience(jwks_file):
    app = make_app(jwks_file, PUBLIC_BASE_URL="https://cds.example.org/api/")
    http = app.test_client()
    public = "https://cds.example.org/api/cds-services"
    assert http.get("/cds-services", headers=bearer(sign(EC, claims(public)))).status_code == 200
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY)))))


def test_several_public_base_urls_each_give_an_audience(jwks_file):
    app = make_app(jwks_file, PUBLIC_BASE_URL="https://cds.example.org, https://cds-2.example.org/x")
    http = app.test_client()
    for base in ("https://cds.example.org", "https://cds-2.example.org/x"):
        token = sign(EC, claims(f"{base}/cds-services"))
        assert http.get("/cds-services", headers=bearer(token)).status_code == 200
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY)))))


# --- the audience never comes from the client's headers (issue 9 section 3) -----------------

OTHER_DEPLOYMENT = "https://cds.other.example.org"
FORWARDED_AS_OTHER = {"Host": "cds.other.example.org", "X-Forwarded-Proto": "https",
                      "X-Forwarded-Host": "cds.other.example.org"}


@pytest.mark.parametrize("proxy", [{}, {"PROXY_FIX_X_PROTO": 1, "PROXY_FIX_X_HOST": 1}],
                         ids=["no-proxy", "behind-a-configured-proxy"])
def test_a_token_for_another_deployment_sent_with_its_host_headers_is_refused(jwks_file, proxy):
    http = make_app(jwks_file, **proxy).test_client()
    for path in ("/cds-services", "/cds-services/iv-anesthetics-order-sign"):
        token = sign(EC, claims(OTHER_DEPLOYMENT + path))
        response = http.get(path, headers={**bearer(token), **FORWARDED_AS_OTHER})
        assert_refused(response)
        response = http.get(path, base_url=OTHER_DEPLOYMENT, headers=bearer(sign(EC, claims(OTHER_DEPLOYMENT + path))))
        assert_refused(response)
    ours = sign(EC, claims(DISCOVERY))
    assert http.get("/cds-services", headers={**bearer(ours), **FORWARDED_AS_OTHER}).status_code == 200


def test_auth_on_without_a_public_base_url_refuses_to_start(monkeypatch, jwks_file):
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL")
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL is required"):
        make_app(jwks_file)
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL is required"):
        make_app(jwks_file, PUBLIC_BASE_URL=" , ")


def test_auth_off_needs_no_public_base_url(monkeypatch):
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL")
    app = create_app({"TESTING": True, "AUTH_ENABLED": False})
    assert app.test_client().get("/cds-services").status_code == 200


@pytest.mark.parametrize("bad", ["cds.example.org", "ftp://cds.example.org", "https://", "https://h/?q=1"])
def test_a_malformed_public_base_url_fails_fast(jwks_file, bad):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        make_app(jwks_file, PUBLIC_BASE_URL=bad)


def test_serve_without_a_public_base_url_prints_why_and_exits_nonzero(tmp_path, jwks_file):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "CDS_PUBLIC_BASE_URL"}
    env["CDS_TRUSTED_CLIENTS"] = json.dumps([{"iss": ISS, "jwks_file": str(jwks_file)}])
    argv = [str(Path(sys.executable).parent / "cds-service"), "serve", "--port", str(free_port())]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PUBLIC_BASE_URL is required" in done.stderr
    assert "Traceback" not in done.stderr


def test_forwarded_proto_is_ignored_unless_a_proxy_is_configured(jwks_file):
    headers = {**bearer(sign(EC, claims(DISCOVERY))), "X-Forwarded-Proto": "https"}
    assert "Strict-Transport-Security" not in make_app(jwks_file).test_client().get(
        "/cds-services", headers=headers).headers
    behind_proxy = make_app(jwks_file, PROXY_FIX_X_PROTO=1).test_client()
    headers = {**bearer(sign(EC, claims(DISCOVERY))), "X-Forwarded-Proto": "https"}
    assert "Strict-Transport-Security" in behind_proxy.get("/cds-services", headers=headers).headers


@pytest.mark.parametrize("bad", [-1, "two", True])
def test_a_bad_proxy_count_fails_fast(jwks_file, bad):
    with pytest.raises(ConfigError, match="PROXY_FIX_X_FOR"):
        make_app(jwks_file, PROXY_FIX_X_FOR=bad)


def test_allowlisted_jku_is_accepted(http):
    token = sign(EC, claims(DISCOVERY), jku=JKU)
    assert http.get("/cds-services", headers=bearer(token)).status_code == 200


def test_tenant_allowlist(jwks_file):
    http = make_app(jwks_file, client={"tenants": ["hospital-a"]}).test_client()
    ok = sign(EC, claims(DISCOVERY, tenant="hospital-a"))
    assert http.get("/cds-services", headers=bearer(ok)).status_code == 200
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY, tenant="b")))))
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY)))))


# --- refused --------------------------------------------------------------------------------

def test_missing_header(http):
    response = http.get("/cds-services")
    assert_refused(response)
    assert "error=" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"])
def test_malformed_authorization_header(http, value):
    assert_refused(http.get("/cds-services", headers={"Authorization": value}))


def test_alg_none(http):
    assert_refused(http.get("/cds-services", headers=bearer(unsigned(claims(DISCOVERY), EC.kid))))


def test_hs256_with_a_secret(http):
    token = hmac_signed(claims(DISCOVERY), EC.kid, b"s" * 64)
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_hs256_keyed_with_the_public_key_is_refused(http):
    """The classic algorithm-confusion attack: HMAC keyed with the public key's bytes."""
    public_pem = RSA.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hmac_signed(claims(DISCOVERY), RSA.kid, public_pem)
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_wrong_aud(http):
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(SERVICE)))))
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY + "/")))))


def test_wrong_iss(http):
    token = sign(EC, claims(DISCOVERY, iss="https://evil.example.org"))
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_trusted_iss_signed_with_a_key_not_on_record(http):
    impostor = ec_key(EC.kid, "ES384")  # same kid, different key
    assert_refused(http.get("/cds-services", headers=bearer(sign(impostor, claims(DISCOVERY)))))


def test_expired(http):
    now = int(time.time())
    token = sign(EC, claims(DISCOVERY, iat=now - 400, exp=now - 60))
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_iat_far_in_the_future(http):
    now = int(time.time())
    token = sign(EC, claims(DISCOVERY, iat=now + 60, exp=now + 300))
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_lifetime_over_the_cap(http):
    now = int(time.time())
    token = sign(EC, claims(DISCOVERY, iat=now, exp=now + 3600))
    assert_refused(http.get("/cds-services", headers=bearer(token)))


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "aud", "iss"])
def test_required_claims(http, missing):
    payload = claims(DISCOVERY)
    del payload[missing]
    token = sign(EC, payload)
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_replayed_jti(http):
    token = sign(EC, claims(DISCOVERY))
    assert http.get("/cds-services", headers=bearer(token)).status_code == 200
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_missing_kid(http):
    assert_refused(http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY), kid=None))))


def test_jku_off_the_allowlist(http):
    token = sign(EC, claims(DISCOVERY), jku="https://evil.example.org/jwks.json")
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_alg_not_matching_the_keys_declared_alg(http):
    other = rsa_key(RSA.kid, "RS256")
    other.private = RSA.private  # right key, but the JWK says RS384
    assert_refused(http.get("/cds-services", headers=bearer(sign(other, claims(DISCOVERY)))))


def test_feedback_and_unknown_paths_under_cds_services_are_protected(http):
    assert_refused(http.post("/cds-services/iv-anesthetics-order-sign/feedback", json={}))
    assert_refused(http.get("/cds-services/nope"))
    assert_refused(http.post(SERVICE, json={}))


def test_preflight_and_openapi_need_no_token(http):
    assert http.options("/cds-services").status_code == 200
    assert http.get("/openapi.json").status_code == 200


def test_token_is_never_logged(http, caplog):
    token = sign(EC, claims(SERVICE, jti="jti-for-log-test"))
    with caplog.at_level(logging.DEBUG):
        assert_refused(http.get("/cds-services", headers=bearer(token)))
        http.get("/cds-services", headers={"Authorization": "Bearer garbage-token-xyz"})
    text = caplog.text
    assert "jti-for-log-test" in text and ISS in text and "InvalidAudienceError" in text
    assert token not in text and token.split(".")[2] not in text
    assert "garbage-token-xyz" not in text


# --- JWKS file: unknown kids do not re-read the file every time (issue 9 section 8) --------

def test_unknown_kids_with_a_jwks_file_read_it_at_most_once_per_cooldown(jwks_file, monkeypatch):
    reads = []
    original = FileKeySource._load
    monkeypatch.setattr(FileKeySource, "_load", lambda self: reads.append(1) or original(self))
    http = make_app(jwks_file).test_client()
    assert len(reads) == 1  # read at start-up
    for n in range(200):
        stranger = ec_key(f"unknown-{n}", "ES384")
        assert_refused(http.get("/cds-services", headers=bearer(sign(stranger, claims(DISCOVERY)))))
    assert len(reads) <= 2
    assert http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY)))).status_code == 200


def test_a_rotated_jwks_file_is_picked_up_at_once(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(EC)))
    http = make_app(path).test_client()
    rotated = ec_key("ec-rotated", "ES384")
    assert_refused(http.get("/cds-services", headers=bearer(sign(rotated, claims(DISCOVERY)))))
    path.write_text(json.dumps(jwks(EC, rotated)))
    assert http.get("/cds-services", headers=bearer(sign(rotated, claims(DISCOVERY)))).status_code == 200


def test_file_key_source_reloads_an_unchanged_file_after_the_cooldown(jwks_file):
    now = [0.0]
    source = FileKeySource(jwks_file, cooldown=30, clock=lambda: now[0])
    for _ in range(5):
        with pytest.raises(Exception, match="unknown kid"):
            source.key_for("nope")
    assert source.reads == 1
    now[0] = 31
    with pytest.raises(Exception, match="unknown kid"):
        source.key_for("nope")
    assert source.reads == 2


# --- JWKS URL: caching and one refresh for an unknown kid -----------------------------------

@pytest.fixture()
def jwks_server():
    server = JwksServer(jwks(RSA, include_alg=False)).start()
    yield server
    server.stop()


def url_app(server, cooldown):
    return create_app({"TESTING": True, "JWKS_REFRESH_COOLDOWN_SECONDS": cooldown,
                       "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_url": server.url}]})


def test_jwks_url_is_fetched_once_and_cached(jwks_server):
    http = url_app(jwks_server, 30).test_client()
    for _ in range(3):
        assert http.get("/cds-services", headers=bearer(sign(RSA, claims(DISCOVERY)))).status_code == 200
    assert jwks_server.fetches == 1


def test_unknown_kid_triggers_exactly_one_refresh(jwks_server):
    http = url_app(jwks_server, 0).test_client()
    assert http.get("/cds-services", headers=bearer(sign(RSA, claims(DISCOVERY)))).status_code == 200
    assert jwks_server.fetches == 1
    stranger = rsa_key("unknown-kid", "RS384")
    assert_refused(http.get("/cds-services", headers=bearer(sign(stranger, claims(DISCOVERY)))))
    assert jwks_server.fetches == 2


def test_rotated_key_is_found_by_the_refresh(jwks_server):
    http = url_app(jwks_server, 0).test_client()
    assert http.get("/cds-services", headers=bearer(sign(RSA, claims(DISCOVERY)))).status_code == 200
    rotated = rsa_key("rsa-2", "RS384")
    jwks_server.document = jwks(RSA, rotated)
    assert http.get("/cds-services", headers=bearer(sign(rotated, claims(DISCOVERY)))).status_code == 200
    assert jwks_server.fetches == 2


def test_unknown_kids_within_the_cooldown_cause_no_fetch(jwks_server):
    http = url_app(jwks_server, 30).test_client()
    assert http.get("/cds-services", headers=bearer(sign(RSA, claims(DISCOVERY)))).status_code == 200
    for n in range(3):
        stranger = rsa_key(f"unknown-{n}", "RS384")
        assert_refused(http.get("/cds-services", headers=bearer(sign(stranger, claims(DISCOVERY)))))
    assert jwks_server.fetches == 1


def test_unreachable_jwks_url_is_a_401_not_a_500():
    app = create_app({"TESTING": True, "JWKS_TIMEOUT_SECONDS": 1,
                      "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_url": "http://127.0.0.1:9/jwks.json"}]})
    assert_refused(app.test_client().get("/cds-services", headers=bearer(sign(RSA, claims(DISCOVERY)))))


# --- the sandbox profile --------------------------------------------------------------------

SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def test_sandbox_profile_is_off_by_default():
    assert SANDBOX_ISS not in create_app({"TESTING": True}).extensions["cds_auth"].clients


def test_sandbox_profile_loads_its_public_key():
    app = create_app({"TESTING": True, "SANDBOX_CLIENT_ENABLED": True})
    client = app.extensions["cds_auth"].clients[SANDBOX_ISS]
    assert client.keys.key_for(SANDBOX_KID).algorithm_name == "ES384"
    assert SANDBOX_JKU in client.jku_allowlist


def test_sandbox_kid_signed_by_another_key_is_refused(monkeypatch):
    monkeypatch.setenv("CDS_SANDBOX_CLIENT_ENABLED", "true")
    http = create_app({"TESTING": True}).test_client()
    forger = ec_key(SANDBOX_KID, "ES384")
    token = sign(forger, claims(DISCOVERY, iss=SANDBOX_ISS), jku=SANDBOX_JKU)
    assert_refused(http.get("/cds-services", headers=bearer(token)))


# --- configuration --------------------------------------------------------------------------

def test_auth_is_on_by_default():
    response = create_app({"TESTING": True}).test_client().get("/cds-services")
    assert response.status_code == 401


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off"])
def test_env_var_turns_auth_off(monkeypatch, value):
    monkeypatch.setenv("CDS_AUTH_ENABLED", value)
    app = create_app({"TESTING": True})
    assert app.config["AUTH_ENABLED"] is False
    assert app.test_client().get("/cds-services").status_code == 200


def test_unrecognised_auth_setting_fails_fast(monkeypatch):
    monkeypatch.setenv("CDS_AUTH_ENABLED", "maybe")
    with pytest.raises(ValueError, match="AUTH_ENABLED"):
        create_app({"TESTING": True})


def test_trusted_clients_from_the_environment(monkeypatch, jwks_file):
    monkeypatch.setenv("CDS_TRUSTED_CLIENTS", json.dumps([{"iss": ISS, "jwks_file": str(jwks_file)}]))
    http = create_app({"TESTING": True}).test_client()
    assert http.get("/cds-services", headers=bearer(sign(EC, claims(DISCOVERY)))).status_code == 200


@pytest.mark.parametrize("bad", [
    {"JWT_ALGORITHMS": ["HS256"]},
    {"JWT_ALGORITHMS": ["none"]},
    {"TRUSTED_CLIENTS": [{"iss": ISS}]},
    {"TRUSTED_CLIENTS": [{"iss": ISS, "jwks_url": "file:///etc/passwd"}]},
    {"TRUSTED_CLIENTS": [{"iss": ISS, "jwks_file": "/nonexistent.json"}]},
    {"TRUSTED_CLIENTS": [{"jwks_url": "https://x"}]},
])
def test_bad_configuration_fails_fast(bad):
    with pytest.raises(ValueError):
        create_app({"TESTING": True, **bad})


def test_serve_warns_when_auth_is_off(monkeypatch, capsys):
    from cds_service import serving

    monkeypatch.setattr(serving, "serve", lambda *args, **kwargs: None)
    monkeypatch.setenv("CDS_AUTH_ENABLED", "false")
    assert cli.main(["serve", "--port", "0"]) == 0
    assert "authentication is OFF" in capsys.readouterr().err
    monkeypatch.delenv("CDS_AUTH_ENABLED")
    assert cli.main(["serve", "--port", "0"]) == 0
    assert "authentication is OFF" not in capsys.readouterr().err


# --- the replay cache -----------------------------------------------------------------------

def test_replay_cache_forgets_expired_entries_and_stays_bounded():
    now = [1000.0]
    cache = InMemoryReplayCache(3, clock=lambda: now[0])
    assert cache.check_and_remember(("i", "a"), 1010)
    assert not cache.check_and_remember(("i", "a"), 1010)
    now[0] = 1011
    assert cache.check_and_remember(("i", "a"), 1020)
    for jti in "bcde":
        assert cache.check_and_remember(("i", jti), 1030)
    assert len(cache) == 3


def test_replay_cache_is_thread_safe():
    cache = InMemoryReplayCache(1000)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(cache.check_and_remember(("i", "same"), time.time() + 60))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


@pytest.mark.parametrize("jku", [[JKU], {"url": JKU}, 5], ids=["list", "object", "number"])
def test_a_jku_header_that_is_not_a_string_is_refused_not_a_500(http, jku):
    token = sign(EC, claims(DISCOVERY), jku=jku)
    assert_refused(http.get("/cds-services", headers=bearer(token)))


def test_a_path_with_a_newline_cannot_forge_a_log_line(http, caplog):
    caplog.set_level(logging.WARNING, logger="cds_service.auth")
    http.get("/cds-services/x%0a2026-01-01 00:00:00,000 INFO token accepted iss=admin")
    messages = [r.getMessage() for r in caplog.records if r.name == "cds_service.auth"]
    assert messages and all("\n" not in m for m in messages)
