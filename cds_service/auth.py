"""JWT authentication of CDS clients (CDS Hooks 2.0 "Trusting CDS Clients").

Every request under ``/cds-services`` (discovery, services, feedback) must carry
``Authorization: Bearer <jwt>`` signed by a trusted client. Failures answer 401 with a
generic OperationOutcome; the reason is logged with ``iss`` and ``jti``, never the token.
PyJWT, the trusted clients and the replay stores are imported only when authentication is on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request

from .config import ConfigError, as_bool, as_str_list
from .errors import ApiError, Issue
from .storage_safety import log_safe

if TYPE_CHECKING:
    from .replay import Cooldown, ReplayCache
    from .trust import TrustedClient

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/cds-services"
NEVER_ALLOWED = frozenset({"none", "HS256", "HS384", "HS512"})
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class AuthFailure(Exception):
    """Why a token was refused (for the log only; the client gets a generic 401)."""

    def __init__(self, reason: str, *, iss: Any = None, jti: Any = None) -> None:
        super().__init__(reason)
        self.reason, self.iss, self.jti = reason, iss, jti


@dataclass
class Verifier:
    """Checks a bearer token against the trusted clients; holds the jti replay cache."""

    clients: dict[str, TrustedClient]
    algorithms: frozenset[str]
    leeway: float
    max_lifetime: float
    replay_cache: ReplayCache
    # Public base URLs from configuration; the audience is one of them + the request path.
    audience_bases: tuple[str, ...] = field(default=())

    def audiences(self, path: str) -> list[str]:
        paths = dict.fromkeys((path, path.rstrip("/") or path))  # a call to ".../id/" is the service ".../id"
        return [base + p for base in self.audience_bases for p in paths]

    def verify(self, token: str, audience: str | Sequence[str]) -> dict[str, Any]:
        """Return the verified claims, or raise AuthFailure."""
        import jwt

        from .trust import KeyNotFound

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("malformed token") from None
        iss, jti = unverified.get("iss"), unverified.get("jti")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg in NEVER_ALLOWED or alg not in self.algorithms:
            raise AuthFailure(f"algorithm not allowed: {str(alg)[:20]!r}", iss=iss, jti=jti)
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("kid missing", iss=iss, jti=jti)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthFailure("typ is not JWT", iss=iss, jti=jti)
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthFailure("untrusted issuer", iss=iss, jti=jti)
        jku = header.get("jku")
        if jku is not None and client.jku_allowlist and (not isinstance(jku, str) or jku not in client.jku_allowlist):
            raise AuthFailure("jku not on the allowlist", iss=iss, jti=jti)
        try:
            jwk = client.keys.key_for(kid)
        except KeyNotFound as exc:
            raise AuthFailure(f"no key: {exc}", iss=iss, jti=jti) from None
        jwk_data = getattr(jwk, "_jwk_data", None)  # PyJWK has no public accessor for "alg"
        declared = jwk_data.get("alg") if isinstance(jwk_data, dict) else None
        if declared and declared != alg:
            raise AuthFailure("alg does not match the key's alg", iss=iss, jti=jti)
        try:
            claims = jwt.decode(
                token, jwk.key, algorithms=[alg], audience=audience, issuer=client.iss,
                leeway=self.leeway, options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise AuthFailure(f"invalid token: {type(exc).__name__}", iss=iss, jti=jti) from None
        except (ValueError, TypeError):  # e.g. a key of the wrong type for the alg
            raise AuthFailure("key does not fit the algorithm", iss=iss, jti=jti) from None
        return self._check_claims(claims, client)

    def _check_claims(self, claims: dict[str, Any], client: TrustedClient) -> dict[str, Any]:
        iss, jti = claims["iss"], claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthFailure("jti must be a non-empty string", iss=iss, jti=jti)
        if not isinstance(claims["iat"], int | float) or not isinstance(claims["exp"], int | float):
            raise AuthFailure("iat/exp must be numbers", iss=iss, jti=jti)
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise AuthFailure("token lifetime exceeds the cap", iss=iss, jti=jti)
        tenant = claims.get("tenant")
        if client.tenants and tenant not in client.tenants:
            raise AuthFailure("tenant not allowed", iss=iss, jti=jti)
        if not self.replay_cache.check_and_remember((iss, jti), float(claims["exp"]) + self.leeway):
            raise AuthFailure("replayed jti", iss=iss, jti=jti)
        return claims


def public_base_urls(value: object) -> tuple[str, ...]:
    """``PUBLIC_BASE_URL`` as normalised base URLs (one, a list, or comma-separated)."""
    if value is None or value == "":
        return ()
    bases = []
    for raw in as_str_list(value, "PUBLIC_BASE_URL"):
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"PUBLIC_BASE_URL entries must be http(s)://host[:port][/prefix], not {raw!r}")
        bases.append(raw.rstrip("/"))
    return tuple(dict.fromkeys(bases))


MISSING_BASE_URL = (
    "PUBLIC_BASE_URL is required when authentication is on: set CDS_PUBLIC_BASE_URL to the base URL "
    "CDS clients call (e.g. https://cds.example.org, several comma-separated). The JWT audience is "
    "checked against it, never against the request's Host or X-Forwarded-* headers."
)


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized(error: str | None) -> ApiError:
    challenge = 'Bearer realm="cds-services"' + (f', error="{error}"' if error else "")
    return ApiError(401, [Issue("Authentication failed.", "login")],
                    headers={"WWW-Authenticate": challenge})


def _log_value(value: Any) -> str:
    """A claim from an unverified token, made safe for one log line."""
    return repr(value)[:120] if value is not None else "-"


def authenticate_request() -> None:
    """``before_request`` hook: verify the JWT on every /cds-services request.

    A call the fast lane (:mod:`.fast_lane`) has already authenticated carries its outcome in
    the WSGI environ, so a token is verified once per request, never twice (its jti would then
    look replayed).
    """
    if request.method == "OPTIONS" or not request.path.startswith(PROTECTED_PREFIX):
        return
    from .fast_lane import FAST_LANE_CLIENT, FAST_LANE_FAILURE

    environ = request.environ
    if FAST_LANE_CLIENT in environ:
        g.cds_client = environ[FAST_LANE_CLIENT]
        return
    if FAST_LANE_FAILURE in environ:
        raise environ[FAST_LANE_FAILURE]
    g.cds_client = verified_client(request.headers.get("Authorization", ""), request.path,
                                   current_app.extensions["cds_auth"])


def verified_client(authorization: str, path: str, verifier: Verifier) -> dict[str, Any]:
    """The client of a verified bearer token (``iss``, ``tenant``, ``jti``), or the ApiError to
    answer with (401; 503 when the replay store is down), logged and counted."""
    from .replay import ReplayStoreUnavailable

    token = _bearer_token(authorization)
    if token is None:
        log.warning("auth rejected: reason=missing bearer token path=%s", log_safe(path))
        from .metrics import count_auth_failure  # imported here, not at start-up: see cds_service.metrics
        count_auth_failure("missing bearer token")
        raise _unauthorized(None)
    try:
        claims = verifier.verify(token, verifier.audiences(path))
    except ReplayStoreUnavailable:
        raise ApiError(503, [Issue("Authentication is temporarily unavailable.", "transient")],
                       headers={"Retry-After": "5"}) from None
    except AuthFailure as failure:
        log.warning("auth rejected: reason=%s iss=%s jti=%s path=%s", failure.reason,
                    _log_value(failure.iss), _log_value(failure.jti), log_safe(path))
        from .metrics import count_auth_failure
        count_auth_failure(failure.reason)
        raise _unauthorized("invalid_token") from None
    return {"iss": claims["iss"], "tenant": claims.get("tenant"), "jti": claims["jti"]}


def init_auth(app: Flask) -> None:
    """Normalise the auth settings and, when enabled, install the verifier and the hook."""
    cfg = app.config
    cfg["AUTH_ENABLED"] = as_bool(cfg["AUTH_ENABLED"], "AUTH_ENABLED")
    cfg["SANDBOX_CLIENT_ENABLED"] = as_bool(cfg["SANDBOX_CLIENT_ENABLED"], "SANDBOX_CLIENT_ENABLED")
    algorithms = frozenset(as_str_list(cfg["JWT_ALGORITHMS"], "JWT_ALGORITHMS"))
    if algorithms & NEVER_ALLOWED or not algorithms:
        raise ValueError("JWT_ALGORITHMS must be asymmetric algorithms; none and HS* are not allowed")
    if not cfg["AUTH_ENABLED"]:
        return
    bases = public_base_urls(cfg.get("PUBLIC_BASE_URL"))
    if not bases:
        raise ConfigError(MISSING_BASE_URL)
    from .replay import LocalCooldown, SharedCooldown
    from .trust import build_clients

    state = app.extensions.get("cds")
    database = getattr(state, "database", None)
    cooldown: Cooldown = SharedCooldown(database) if database is not None else LocalCooldown()
    app.extensions["cds_auth"] = Verifier(
        clients=build_clients(cfg, sandbox=cfg["SANDBOX_CLIENT_ENABLED"], cooldown=cooldown),
        algorithms=algorithms,
        leeway=float(cfg["JWT_LEEWAY_SECONDS"]),
        max_lifetime=float(cfg["JWT_MAX_LIFETIME_SECONDS"]),
        replay_cache=_replay_cache(cfg, database),
        audience_bases=bases,
    )
    app.before_request(authenticate_request)


def _replay_cache(cfg: Mapping[str, Any], database: Any) -> ReplayCache:
    """The database when the service has one (shared by workers and instances), else memory."""
    from .replay import DatabaseReplayCache, InMemoryReplayCache

    local = InMemoryReplayCache(int(cfg["JTI_CACHE_SIZE"]))
    if database is None:
        log.warning("no database (AUDIT_ENABLED=false): the jti replay cache is per process; a "
                    "token replayed to another worker or instance is not detected")
        return local
    fallback = as_bool(cfg["JTI_STORE_FALLBACK_TO_MEMORY"], "JTI_STORE_FALLBACK_TO_MEMORY")
    return DatabaseReplayCache(database, local, fallback_to_memory=fallback)
