"""Latency of the common path (no ketamine/lidocaine) versus an in-scope order, in process.

Runs the real Flask app through its WSGI test client (no network), so the figures are the
service's own cost: envelope validation, the raw-byte scan, and for the in-scope request the
R4B parse, decision and card rendering. Usage: ``python bench/common_path.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

from cds_service import create_app

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "fhir_fixtures" / "hook-requests"
CASES = {
    "other drug (sandbox-shaped etodolac order)": "26-etodolac-oral-sandbox-shape.json",
    "in scope (IV ketamine for CRPS, warning card)": "01-crps-ketamine-reasoncode.json",
}
URL = "/cds-services/iv-anesthetics-order-sign"


def measure(client, body: bytes, n: int) -> list[float]:
    for _ in range(50):  # warm-up
        client.post(URL, data=body, content_type="application/json")
    timings = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.post(URL, data=body, content_type="application/json")
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return timings


def peak_kib(client, body: bytes) -> float:
    tracemalloc.start()
    client.post(URL, data=body, content_type="application/json")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    client = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False}).test_client()
    results = {}
    for label, name in CASES.items():
        body = (REQUESTS / name).read_bytes()
        timings = sorted(measure(client, body, args.n))
        p50 = statistics.median(timings)
        p95 = timings[int(len(timings) * 0.95) - 1]
        results[label] = p50
        print(f"{label:48s} n={args.n} p50={p50:.3f} ms p95={p95:.3f} ms "
              f"peak alloc={peak_kib(client, body):.0f} KiB")
    common, in_scope = results.values()
    print(f"in-scope / common-path p50 ratio: {in_scope / common:.1f}x")


if __name__ == "__main__":
    main()
