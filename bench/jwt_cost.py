"""JWT verification cost per hook call, in process (the throughput runs switch auth off).

Calls the order-sign service through Flask's test client with the out-of-scope etodolac order,
``--n`` times with authentication off and ``--n`` times with a fresh ES384 / RS384 token per call
(signed before timing; each has its own jti, so the replay check runs as in production), and
prints p50 of each and the difference. Usage: ``python bench/jwt_cost.py [--n 1000]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.throughput import OUT_OF_SCOPE, SERVICE_PATH  # noqa: E402
from cds_service import create_app  # noqa: E402
from tests.jwt_support import BASE, ISS, claims, ec_key, jwks, rsa_key, sign  # noqa: E402

AUD = BASE + SERVICE_PATH


def timed(client, body: bytes, headers: list[dict[str, str]]) -> list[float]:
    timings = []
    for header in headers:
        started = time.perf_counter()
        response = client.post(SERVICE_PATH, data=body, content_type="application/json", headers=header)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    body = OUT_OF_SCOPE.read_bytes()
    keys = {"ES384": ec_key("ec-1", "ES384"), "RS384": rsa_key("rsa-1", "RS384")}
    with tempfile.TemporaryDirectory() as tmp:
        jwks_file = Path(tmp) / "jwks.json"
        jwks_file.write_text(json.dumps(jwks(*keys.values())))
        common = {"AUDIT_ENABLED": False, "LOG_LEVEL": "WARNING", "PUBLIC_BASE_URL": BASE}
        off = create_app({**common, "AUTH_ENABLED": False}).test_client()
        on = create_app({**common, "TRUSTED_CLIENTS": [{"iss": ISS, "jwks_file": str(jwks_file)}]}).test_client()
        timed(off, body, [{}] * 50)
        baseline = statistics.median(timed(off, body, [{}] * args.n))
        print(f"auth off: p50 {baseline:.3f} ms")
        for alg, key in keys.items():
            tokens = [{"Authorization": f"Bearer {sign(key, claims(AUD, jti=str(uuid.uuid4())))}"}
                      for _ in range(args.n + 50)]
            timed(on, body, tokens[:50])
            p50 = statistics.median(timed(on, body, tokens[50:]))
            print(f"auth on, {alg}: p50 {p50:.3f} ms (+{p50 - baseline:.3f} ms per call for the JWT check)")


if __name__ == "__main__":
    main()
