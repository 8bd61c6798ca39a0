"""Trusted CDS clients and where their public keys come from.

Keys always come from what the operator configured (``jwks_url`` or ``jwks_file``); a
token's ``jku`` header never makes the service fetch a URL of the token's choosing. When a
client has a ``jku_allowlist``, a token that carries ``jku`` must name one of those URLs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from .replay import Cooldown, LocalCooldown

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
    """A JWKS file read at start-up; an unknown kid may re-read it (key rotation).

    The file is re-read when it has changed on disk (size, mtime or inode differ: one ``stat``)
    or, failing that, at most once per ``cooldown`` seconds, so tokens with random kids
    cannot make every request read and parse the file.
    """

    def __init__(self, path: Path, *, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._keys = self._load()
        self._next_reload = clock() + cooldown
        self.reads = 1  # how often the file was read (for tests and diagnostics)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> PyJWKSet:
        return PyJWKSet.from_dict(json.loads(self._path.read_text(encoding="utf-8")))

    def _reload_if_due(self) -> None:
        now, signature = self._clock(), self._stat()
        if signature == self._signature and now < self._next_reload:
            return
        self._next_reload = now + self._cooldown
        self.reads += 1
        try:
            self._keys = self._load()
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise KeyNotFound(f"JWKS file unreadable: {type(exc).__name__}") from None
        self._signature = signature

    def key_for(self, kid: str) -> PyJWK:
        key = _signing_key(self._keys, kid)
        if key is None:
            with self._lock:
                key = _signing_key(self._keys, kid)  # another thread may have just reloaded
                if key is None:
                    self._reload_if_due()
                    key = _signing_key(self._keys, kid)
        if key is None:
            raise KeyNotFound("unknown kid")
        return key


class UrlKeySource:
    """A JWKS URL, fetched lazily with PyJWKClient (cache, timeout).

    An unknown kid forces one refresh, at most once per cooldown period (counted from the last
    fetch of any worker sharing the cooldown), so random kids
    cannot make the service hammer the client's JWKS endpoint. The cooldown is a shared one
    (the service's database) when there is one, so N workers or instances refetch once, not N
    times, per period.
    """

    def __init__(self, url: str, *, timeout: float, lifespan: float, cooldown: float,
                 shared_cooldown: Cooldown | None = None) -> None:
        self.url = url
        self._cooldown = cooldown
        self._cooldown_name = "jwks:" + hashlib.sha256(url.encode()).hexdigest()[:40]
        self._shared = shared_cooldown or LocalCooldown()
        self._lock = threading.Lock()
        # The cooldown here is ours (shared); PyJWKClient's own per-process one is not used.
        self._client = PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan, timeout=timeout,
                                   cooldown_duration=0)

    def key_for(self, kid: str) -> PyJWK:
        try:
            with self._lock:
                cache = self._client.jwk_set_cache
                if cache is None or cache.get() is None:  # about to fetch: that starts a cooldown
                    self._shared.claim(self._cooldown_name, self._cooldown)
                key = _matching(self._client.get_signing_keys(), kid)
                if key is None and self._shared.claim(self._cooldown_name, self._cooldown):
                    key = _matching(self._client.get_signing_keys(refresh=True), kid)
        except jwt.PyJWKClientConnectionError:
            raise KeyNotFound("JWKS fetch failed") from None
        except (jwt.PyJWTError, ValueError):
            raise KeyNotFound("unknown kid") from None
        if key is None:
            raise KeyNotFound("unknown kid")
        return key


def _matching(keys: list[PyJWK], kid: str) -> PyJWK | None:
    return next((key for key in keys if key.key_id == kid), None)


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


def build_client(entry: Mapping[str, Any], config: Mapping[str, Any],
                 cooldown: Cooldown | None = None) -> TrustedClient:
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
                            cooldown=float(config["JWKS_REFRESH_COOLDOWN_SECONDS"]),
                            shared_cooldown=cooldown)
    else:
        try:
            keys = FileKeySource(Path(str(file)), cooldown=float(config["JWKS_REFRESH_COOLDOWN_SECONDS"]))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"TRUSTED_CLIENTS[{iss!r}].jwks_file {file!r}: {exc}") from exc
    return TrustedClient(iss, keys, _str_set(entry, "jku_allowlist"), _str_set(entry, "tenants"))


def sandbox_profile() -> dict[str, Any]:
    """The CDS Hooks sandbox as a trusted client. Its private key is public: testing only."""
    return {"iss": SANDBOX_ISS, "jwks_file": str(SANDBOX_JWKS_FILE), "jku_allowlist": [SANDBOX_JKU]}


def build_clients(config: Mapping[str, Any], *, sandbox: bool,
                  cooldown: Cooldown | None = None) -> dict[str, TrustedClient]:
    entries = config.get("TRUSTED_CLIENTS") or []
    if isinstance(entries, str):  # from the environment: CDS_TRUSTED_CLIENTS='[...]' is JSON
        entries = json.loads(entries)
    if not isinstance(entries, list | tuple):
        raise ValueError("TRUSTED_CLIENTS must be a list of mappings")
    entries = list(entries) + ([sandbox_profile()] if sandbox else [])
    clients: dict[str, TrustedClient] = {}
    for entry in entries:
        client = build_client(entry, config, cooldown)
        if client.iss in clients:
            raise ValueError(f"TRUSTED_CLIENTS lists iss {client.iss!r} more than once")
        clients[client.iss] = client
    return clients
