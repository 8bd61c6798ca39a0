"""Helpers for the auth tests: key pairs, JWKS documents, token minting, a loopback JWKS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

BASE = "http://localhost"
ISS = "https://ehr.example.org"


@dataclass
class KeyPair:
    kid: str
    alg: str
    private: Any

    def public_jwk(self, *, include_alg: bool = True) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig")
        if include_alg:
            jwk["alg"] = self.alg
        return jwk


def ec_key(kid: str = "ec-1", alg: str = "ES384") -> KeyPair:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return KeyPair(kid, alg, ec.generate_private_key(curve))


def rsa_key(kid: str = "rsa-1", alg: str = "RS384") -> KeyPair:
    return KeyPair(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwks(*keys: KeyPair, include_alg: bool = True) -> dict[str, Any]:
    return {"keys": [k.public_jwk(include_alg=include_alg) for k in keys]}


def claims(aud: str = f"{BASE}/cds-services", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def sign(key: KeyPair, payload: dict[str, Any] | None = None, **header: Any) -> str:
    headers = {"kid": key.kid, "typ": "JWT", **header}
    headers = {k: v for k, v in headers.items() if v is not None}
    return jwt.encode(payload or claims(), key.private, algorithm=key.alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], kid: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def hmac_signed(payload: dict[str, Any], kid: str, secret: bytes) -> str:
    """HS256 by hand (PyJWT refuses asymmetric-looking secrets; an attacker would not)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts how often it is fetched."""

    document: dict[str, Any]
    fetches: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
