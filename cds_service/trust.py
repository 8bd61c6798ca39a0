"""Trusted CDS clients and where their public keys come from.

Keys always come from what the operator configured (``jwks_url`` or ``jwks_file``); a
token's ``jku`` header never makes the service fetch a URL of the token's choosing. When a
client has a ``jku_allowlist``, a token that carries ``jku`` must name one of those URLs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_JWKS_FILE = Path(__file__).parent / "trusted" / "sandbox-jwks.json"


class KeyNotFound(Exception):
    """No usable key with that kid, even after one refresh."""


class KeySource(Protocol):
    def key_for(self, kid: str) -> PyJWK: ...


def _signing_key(jwk_set: PyJWKSet, kid: str) -> PyJWK | None:
    for key in jwk_set.keys:
        if key.key_id == kid and key.public_key_use in ("sig", None):
            return key
    return None


class FileKeySource:
    """A JWKS file read at start-up; an unknown kid re-reads the file once (key rotation)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._keys = self._load()

    def _load(self) -> PyJWKSet:
        return PyJWKSet.from_dict(json.loads(self._path.read_text(encoding="utf-8")))

    def key_for(self, kid: str) -> PyJWK:
        key = _signing_key(self._keys, kid)
        if key is None:
            with self._lock:
                try:
                    self._keys = self._load()
                except (OSError, ValueError, jwt.PyJWTError) as exc:
                    raise KeyNotFound(f"JWKS file unreadable: {type(exc).__name__}") from None
            key = _signing_key(self._keys, kid)
        if key is None:
            raise KeyNotFound("unknown kid")
        return key


class UrlKeySource:
    """A JWKS URL, fetched lazily with PyJWKClient (cache, timeout, refresh cooldown).

    An unknown kid forces one refresh, at most once per cooldown period, so random kids
    cannot make the service hammer the client's JWKS endpoint.
    """

    def __init__(self, url: str, *, timeout: float, lifespan: float, cooldown: float) -> None:
        self.url = url
        self._client = PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan, timeout=timeout,
                                   cooldown_duration=cooldown)

    def key_for(self, kid: str) -> PyJWK:
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise KeyNotFound("JWKS fetch failed") from None
        except (jwt.PyJWTError, ValueError):
            raise KeyNotFound("unknown kid") from None


@dataclass(frozen=True)
class TrustedClient:
    iss: str
    keys: KeySource
    jku_allowlist: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()


def _str_set(entry: Mapping[str, Any], name: str) -> frozenset[str]:
    value = entry.get(name) or []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"TRUSTED_CLIENTS[{entry.get('iss')!r}].{name} must be a list of strings")
    return frozenset(value)


def build_client(entry: Mapping[str, Any], config: Mapping[str, Any]) -> TrustedClient:
    """One trusted client from its configuration mapping (raises ValueError when invalid)."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"each TRUSTED_CLIENTS entry must be a mapping, not {type(entry).__name__}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ValueError("each TRUSTED_CLIENTS entry needs an 'iss'")
    url, file = entry.get("jwks_url"), entry.get("jwks_file")
    if bool(url) == bool(file):
        raise ValueError(f"TRUSTED_CLIENTS[{iss!r}] needs exactly one of 'jwks_url' or 'jwks_file'")
    keys: KeySource
    if url:
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError(f"TRUSTED_CLIENTS[{iss!r}].jwks_url must be an http(s) URL")
        keys = UrlKeySource(url, timeout=float(config["JWKS_TIMEOUT_SECONDS"]),
                            lifespan=float(config["JWKS_CACHE_SECONDS"]),
                            cooldown=float(config["JWKS_REFRESH_COOLDOWN_SECONDS"]))
    else:
        try:
            keys = FileKeySource(Path(str(file)))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"TRUSTED_CLIENTS[{iss!r}].jwks_file {file!r}: {exc}") from exc
    return TrustedClient(iss, keys, _str_set(entry, "jku_allowlist"), _str_set(entry, "tenants"))


def sandbox_profile() -> dict[str, Any]:
    """The CDS Hooks sandbox as a trusted client. Its private key is public: testing only."""
    return {"iss": SANDBOX_ISS, "jwks_file": str(SANDBOX_JWKS_FILE), "jku_allowlist": [SANDBOX_JKU]}


def build_clients(config: Mapping[str, Any], *, sandbox: bool) -> dict[str, TrustedClient]:
    entries = config.get("TRUSTED_CLIENTS") or []
    if isinstance(entries, str):  # from the environment: CDS_TRUSTED_CLIENTS='[...]' is JSON
        entries = json.loads(entries)
    if not isinstance(entries, list | tuple):
        raise ValueError("TRUSTED_CLIENTS must be a list of mappings")
    entries = list(entries) + ([sandbox_profile()] if sandbox else [])
    clients: dict[str, TrustedClient] = {}
    for entry in entries:
        client = build_client(entry, config)
        if client.iss in clients:
            raise ValueError(f"TRUSTED_CLIENTS lists iss {client.iss!r} more than once")
        clients[client.iss] = client
    return clients
